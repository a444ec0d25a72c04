"""Stored responses in Redis, so that any front serves them: ``llm:response:<id>`` holds the
request's record (its owner, parameters, input items and the job that runs it), and
``llm:response:<id>:result`` the job's result once it ended (recorded once: by the front that
waited for it, or by the worker for a background run). Both live ``RESPONSES_TTL`` seconds."""

from __future__ import annotations

from typing import Any, cast

import redis

from app.errors import APIError
from app.responses.items import message_text, output_items
from config.keys import claim_key, detached_key
from config.protocol import decode, encode
from config.redisconn import Replicas, wait_for_replica
from config.results import JobResult

MAX_CHAIN = 100  # responses a previous_response_id chain may go back


def record_key(response_id: str) -> str:
    return f"llm:response:{response_id}"


def result_key(response_id: str) -> str:
    return f"llm:response:{response_id}:result"


class ResponseStore:
    def __init__(self, client: redis.Redis, ttl: int, replicas: Replicas | None = None) -> None:
        self.client = client
        self.ttl = ttl
        self.replicas = replicas  # stored responses outlive a failover (config/redisconn.py)

    def save(self, record: dict[str, Any], result: JobResult | None = None) -> None:
        """Store a response's record, and its result (unless one is stored already); then wait
        for a replica to have them."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(record_key(record["id"]), encode(record), ex=self.ttl)
        if result is not None:
            pipe.set(result_key(record["id"]), encode(result), nx=True, ex=self.ttl)
        pipe.execute()
        wait_for_replica(self.replicas)

    def get(self, response_id: str, owner: str, param: str | None = None) -> dict[str, Any]:
        """The record of ``response_id``; 404 if it does not exist or belongs to another key
        (which must not learn that it exists)."""
        raw = self.client.get(record_key(response_id))
        record = decode(raw) if raw else None
        # .get: an id ending ":result" names a result, which has no owner: 404 too.
        if record is None or record.get("owner") != owner:
            raise APIError(404, f"Response with id '{response_id}' not found.", param, "not_found")
        return record

    def result(self, response_id: str) -> JobResult | None:
        raw = self.client.get(result_key(response_id))
        return cast(JobResult, decode(raw)) if raw else None  # as the front or a worker wrote it

    def delete(self, response_id: str) -> None:
        self.client.delete(record_key(response_id), result_key(response_id))

    def running_attempt(self, record: dict[str, Any]) -> str:
        """The job id of a background run's current attempt (the workers may have retried)."""
        raw = self.client.get(detached_key(record["job_id"]))
        attempt: str = decode(raw)["job"]["id"] if raw else record["job_id"]
        return attempt

    def is_claimed(self, job_id: str) -> bool:
        return bool(self.client.exists(claim_key(job_id)))

    def conversation(self, response_id: str, owner: str) -> list[dict[str, Any]]:
        """The items of a chain up to and including ``response_id``: each response's input items
        and output items, oldest first (for ``previous_response_id``)."""
        chain: list[tuple[dict[str, Any], JobResult]] = []
        next_id: str | None = response_id
        while next_id and len(chain) < MAX_CHAIN:
            record = self.get(next_id, owner, "previous_response_id")
            if record["request"].get("conversation"):
                # Its input was the conversation as it stood, which the chain does not hold.
                raise APIError(
                    400,
                    f"Response '{next_id}' is part of a conversation; continue it with "
                    "'conversation', not 'previous_response_id'.",
                    "previous_response_id",
                )
            result = self.result(next_id)
            if result is None or result["status"] != "completed":
                raise APIError(
                    400,
                    f"Response '{next_id}' has not completed; only a completed response can "
                    "be continued.",
                    "previous_response_id",
                )
            chain.append((record, result))
            next_id = record["request"]["previous_response_id"]
        items: list[dict[str, Any]] = []
        for record, result in reversed(chain):
            items += record["input_items"]
            items += [_as_input(item) for item in output_items(record["id"], result)]
        return items


def _as_input(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as the input item that continues the conversation."""
    if item["type"] == "message":
        content = [{"type": "output_text", "text": message_text(item)}]
        return {"id": item["id"], "type": "message", "role": "assistant", "content": content}
    keys = ("id", "type", "call_id", "name", "arguments")
    return {key: item[key] for key in keys}
