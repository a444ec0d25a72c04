"""Stored conversations in Redis, so that any front serves them: ``llm:conversation:<id>`` holds
its record (its owner, creation time and metadata), ``llm:conversation-items:<id>`` its items (a
hash, by item id) and ``llm:conversation-order:<id>`` their order (an :class:`app.listing.Index`,
so a page of items is read by Redis). The three names differ before the id, so no id a client
sends names another's key. They live ``ttl`` seconds (RESPONSES_TTL) from the conversation's
last change."""

from __future__ import annotations

import time
from typing import Any

import redis

from app.errors import APIError
from app.listing import Index, text
from app.responses.items import new_id
from config.protocol import decode, encode
from config.redisconn import Replicas, wait_for_replica

ATTEMPTS = 5  # tries to append while the conversation keeps changing under the append


def record_key(conversation_id: str) -> str:
    return f"llm:conversation:{conversation_id}"


def items_key(conversation_id: str) -> str:
    return f"llm:conversation-items:{conversation_id}"


def order_key(conversation_id: str) -> str:
    return f"llm:conversation-order:{conversation_id}"


class ConversationStore:
    def __init__(self, client: redis.Redis, ttl: int, replicas: Replicas | None = None) -> None:
        self.client = client
        self.ttl = ttl
        self.replicas = replicas  # conversations outlive a failover (config/redisconn.py)

    def create(
        self, owner: str, metadata: dict[str, str], items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A new conversation of ``owner``, with ``items`` (each with its id) in it."""
        record: dict[str, Any] = {
            "id": new_id("conv"),
            "owner": owner,
            "created_at": int(time.time()),
            "metadata": metadata,
        }
        pipe = self.client.pipeline()  # one transaction: it appears with its items
        pipe.set(record_key(record["id"]), encode(record), ex=self.ttl)
        self._add(pipe, record["id"], items)
        pipe.execute()
        wait_for_replica(self.replicas)
        return record

    def get(self, conversation_id: str, owner: str, param: str | None = None) -> dict[str, Any]:
        """The record of ``conversation_id``; 404 if it does not exist or belongs to another key
        (which must not learn that it exists)."""
        raw = self.client.get(record_key(conversation_id))
        record = decode(raw) if raw else None
        if record is None or record["owner"] != owner:
            raise APIError(
                404, f"Conversation with id '{conversation_id}' not found.", param, "not_found"
            )
        return record

    def set_metadata(self, record: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        record = {**record, "metadata": metadata}
        pipe = self.client.pipeline()
        pipe.set(record_key(record["id"]), encode(record), ex=self.ttl)
        self._refresh(pipe, record["id"])
        pipe.execute()
        wait_for_replica(self.replicas)
        return record

    def delete(self, conversation_id: str) -> None:
        self.client.delete(
            record_key(conversation_id), items_key(conversation_id), order_key(conversation_id)
        )

    def append(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        """Add ``items`` (each with its id) after the conversation's; nothing if it is gone
        (deleted while a response ran), even if it goes as they are added."""
        if not items:
            return
        key = record_key(conversation_id)
        for _ in range(ATTEMPTS):
            # One transaction (another append goes before or after), made only if the record
            # did not change meanwhile: a delete leaves no items behind it.
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    if not pipe.exists(key):
                        return
                    pipe.multi()
                    pipe.expire(key, self.ttl)
                    self._add(pipe, conversation_id, items)
                    pipe.execute()
                    wait_for_replica(self.replicas)
                    return
                except redis.WatchError:
                    continue  # changed (its metadata, or deleted): look again

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        """Item ``item_id`` of the conversation; 404 if it has none such."""
        raw = self.client.hget(items_key(conversation_id), item_id)
        if raw is None:
            raise APIError(404, f"Item with id '{item_id}' not found.", None, "not_found")
        item: dict[str, Any] = decode(raw)
        return item

    def remove_item(self, conversation_id: str, item_id: str) -> None:
        """Take item ``item_id`` out of the conversation; 404 if it has none such."""
        pipe = self.client.pipeline()
        pipe.hdel(items_key(conversation_id), item_id)
        pipe.zrem(order_key(conversation_id), item_id)
        pipe.expire(record_key(conversation_id), self.ttl)  # a change: kept as long again
        self._refresh(pipe, conversation_id)
        removed = pipe.execute()[0]
        if not removed:
            raise APIError(404, f"Item with id '{item_id}' not found.", None, "not_found")

    def page(
        self, conversation_id: str, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        """One page of the conversation's items (see :meth:`app.listing.Index.page`)."""
        key = items_key(conversation_id)

        def load(ids: list[str]) -> list[dict[str, Any] | None]:
            return [decode(raw) if raw else None for raw in self.client.hmget(key, ids)]

        return self._order(conversation_id).page(limit, after, load, order)

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every item of the conversation, oldest first: what a response in it reads first."""
        ids = [text(i) for i in self.client.zrange(order_key(conversation_id), 0, -1)]
        if not ids:
            return []
        raws = self.client.hmget(items_key(conversation_id), ids)
        return [decode(raw) for raw in raws if raw]

    def _add(self, pipe: Any, conversation_id: str, items: list[dict[str, Any]]) -> None:
        if items:
            pipe.hset(
                items_key(conversation_id), mapping={item["id"]: encode(item) for item in items}
            )
            order = self._order(conversation_id)
            for item in items:  # each after the last: scores rise within the transaction too
                order.add(item["id"], pipe)
        self._refresh(pipe, conversation_id)

    def _refresh(self, pipe: Any, conversation_id: str) -> None:
        """Keep the items as long as the record (from its last change)."""
        pipe.expire(items_key(conversation_id), self.ttl)
        pipe.expire(order_key(conversation_id), self.ttl)

    def _order(self, conversation_id: str) -> Index:
        return Index(self.client, order_key(conversation_id))
