"""A conversation's shapes: its object, and items as it stores and lists them (each with its id,
``type`` and ``status``, as the Responses API writes items)."""

from __future__ import annotations

from typing import Any

from app.responses.items import ITEM_PREFIXES, message_text, new_id, text_part


def conversation_object(record: dict[str, Any]) -> dict[str, Any]:
    """The conversation in OpenAI's shape, from its stored record."""
    return {
        "id": record["id"],
        "object": "conversation",
        "created_at": record["created_at"],
        "metadata": record["metadata"],
    }


def new_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loaded input items (see :func:`app.responses.schema.input_item`) as stored, each with a
    new id."""
    return [completed({"id": new_id(ITEM_PREFIXES[item["type"]]), **item}) for item in items]


def completed(item: dict[str, Any]) -> dict[str, Any]:
    """An input item with an id as a conversation lists it: ``completed``, an assistant's text as
    an output text part with its (empty) annotations."""
    stored = {**item, "status": item.get("status", "completed")}
    if item["type"] == "message" and item["role"] == "assistant":
        stored["content"] = [text_part(message_text(item))]
    return stored


def list_page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Items as one whole list (those one request added)."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": False,
    }
