"""What the Conversations routes do: create, read, update and delete stored conversations
(:class:`ConversationStore`) and their items, each for its owner only."""

from __future__ import annotations

from typing import Any

from app.conversations.items import conversation_object, list_page, new_items
from app.conversations.store import ConversationStore


class ConversationService:
    """``/v1/conversations``: conversations and their items, on behalf of their owner (another
    owner gets 404 for them)."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    def create(self, data: dict[str, Any], owner: str) -> dict[str, Any]:
        items = new_items(data.get("items") or [])
        record = self.store.create(owner, data.get("metadata") or {}, items)
        return conversation_object(record)

    def retrieve(self, conversation_id: str, owner: str) -> dict[str, Any]:
        return conversation_object(self.store.get(conversation_id, owner))

    def update(self, conversation_id: str, owner: str, data: dict[str, Any]) -> dict[str, Any]:
        """Replace the conversation's metadata."""
        record = self.store.get(conversation_id, owner)
        return conversation_object(self.store.set_metadata(record, data["metadata"] or {}))

    def delete(self, conversation_id: str, owner: str) -> dict[str, Any]:
        self.store.get(conversation_id, owner)
        self.store.delete(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    def list_items(
        self, conversation_id: str, owner: str, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        self.store.get(conversation_id, owner)
        return self.store.page(conversation_id, limit, order, after)

    def add_items(self, conversation_id: str, owner: str, data: dict[str, Any]) -> dict[str, Any]:
        """Add the request's items last; the list of the items added."""
        self.store.get(conversation_id, owner)
        items = new_items(data["items"])
        self.store.append(conversation_id, items)
        return list_page(items)

    def item(self, conversation_id: str, owner: str, item_id: str) -> dict[str, Any]:
        self.store.get(conversation_id, owner)
        return self.store.item(conversation_id, item_id)

    def delete_item(self, conversation_id: str, owner: str, item_id: str) -> dict[str, Any]:
        """Take an item out of the conversation; the conversation, as OpenAI answers."""
        record = self.store.get(conversation_id, owner)
        self.store.remove_item(conversation_id, item_id)
        return conversation_object(record)
