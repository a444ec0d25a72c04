"""The request schemas of ``/v1/rerank`` (Cohere's and Jina's shape, as vLLM serves it) and
``/v1/score`` (vLLM's)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas import Lenient, StringOrList


class Document(fields.Field):
    """A document to rerank: a string, or an object with its ``text`` (Cohere's form)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            value = value["text"]
        if not isinstance(value, str):
            raise ValidationError('must be a string or an object with a "text" string')
        if not value:
            raise ValidationError("must not be empty")
        return value


class RerankSchema(Lenient):
    model = fields.String(required=True)
    query = fields.String(required=True, validate=validate.Length(min=1))
    documents = fields.List(Document(), required=True, validate=validate.Length(min=1))
    # The best top_n results (all of them without it; 0 too, as vLLM reads it).
    top_n = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    return_documents = fields.Boolean(load_default=True)
    user = fields.String(allow_none=True)


class ScoreSchema(Lenient):
    model = fields.String(required=True)
    # One text against each of text_2, or each of text_1 against its text_2.
    text_1 = StringOrList(required=True)
    text_2 = StringOrList(required=True)
    user = fields.String(allow_none=True)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        for name in ("text_1", "text_2"):
            texts = data.get(name, [])
            if not texts:
                raise ValidationError("must not be empty", name)
            if not all(texts):
                raise ValidationError("must not contain an empty string", name)
        first, second = data.get("text_1", []), data.get("text_2", [])
        if len(first) != 1 and len(first) != len(second):
            raise ValidationError(
                "must be one text, or as many texts as text_2 (one pair each)", "text_1"
            )
