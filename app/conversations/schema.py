"""The request bodies of ``/v1/conversations``: a conversation's ``items`` (input items, as the
Responses API takes them) and its ``metadata`` (up to 16 string pairs)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from app.responses.schema import input_item
from app.schemas import Lenient

MAX_ITEMS = 20  # items one request may add, as OpenAI allows
MAX_METADATA = 16
MAX_KEY = 64
MAX_VALUE = 512


class ConversationItems(fields.Field):
    """A list of up to 20 input items (messages, function calls and their outputs); loads each
    as the Responses API loads its input items."""

    def __init__(self, min_items: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_items = min_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, list):
            raise ValidationError("must be a list of input items")
        if not self.min_items <= len(value) <= MAX_ITEMS:
            raise ValidationError(f"must have {self.min_items} to {MAX_ITEMS} items")
        return [input_item(item, i) for i, item in enumerate(value)]


class Metadata(fields.Field):
    """Up to 16 pairs of strings: keys up to 64 characters, values up to 512."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("must be an object of strings")
        if len(value) > MAX_METADATA:
            raise ValidationError(f"must have at most {MAX_METADATA} pairs")
        for key, text in value.items():
            if len(key) > MAX_KEY:
                raise ValidationError(f"a key must have at most {MAX_KEY} characters")
            if not isinstance(text, str) or len(text) > MAX_VALUE:
                raise ValidationError(f"{key!r} must be a string of at most {MAX_VALUE} characters")
        return dict(value)


class ConversationCreateSchema(Lenient):
    items = ConversationItems(allow_none=True)
    metadata = Metadata(allow_none=True)


class ConversationUpdateSchema(Lenient):
    metadata = Metadata(required=True, allow_none=True)  # null: no metadata


class ItemsCreateSchema(Lenient):
    items = ConversationItems(min_items=1, required=True)
