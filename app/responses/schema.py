"""The request of ``POST /v1/responses``, loaded to what the chat job needs.

``input`` is a string or a list of items: messages (``input_text`` parts, or a string), the
model's earlier ``function_call`` items and their ``function_call_output`` items, its
``reasoning`` items (kept in a conversation, not shown to the model again). Tools are
function tools (flat, as the Responses API writes them); ``text.format`` is ``text``,
``json_object`` or ``json_schema`` (flat too). ``conversation`` names a stored conversation
(:mod:`app.conversations`) whose items come first.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app.chat_schemas import FUNCTION_NAME, ToolChoice
from app.reasoning import effort_field
from app.schemas import Lenient

ROLES = ["user", "assistant", "system", "developer"]


class ResponseInput(fields.Field):
    """A string, or a list of input items; loads to a list of items (each with its ``type``;
    a message's content as one text part, as the API lists input items)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if isinstance(value, str):
            value = [{"role": "user", "content": value}]
        if not isinstance(value, list) or not value:
            raise ValidationError("must be a string or a non-empty list of input items")
        return [input_item(item, i) for i, item in enumerate(value)]


def input_item(item: Any, index: int) -> dict:
    """Item ``index`` of a list of input items, loaded (see :class:`ResponseInput`)."""
    if not isinstance(item, dict):
        raise ValidationError(f"item {index} must be an object")
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        if item.get("role") not in ROLES:
            raise ValidationError(f"item {index}: role must be one of {', '.join(ROLES)}")
        part = "output_text" if item["role"] == "assistant" else "input_text"
        content = [{"type": part, "text": _text(item, index)}]
        return {"type": "message", "role": item["role"], "content": content}
    if kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise ValidationError(f"item {index}: a function_call needs a string {key!r}")
        return {k: item[k] for k in ("type", "call_id", "name", "arguments")}
    if kind == "function_call_output":
        output = item.get("output")
        if not isinstance(item.get("call_id"), str) or not isinstance(output, str | list):
            raise ValidationError(
                f"item {index}: a function_call_output needs a string 'call_id' and 'output'"
            )
        if isinstance(output, list):  # content parts: their text
            output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
        return {"type": kind, "call_id": item["call_id"], "output": output}
    if kind == "reasoning":  # a reasoning model's thinking, sent back: kept, never re-read
        return {
            "type": kind,
            "summary": _parts(item.get("summary"), "summary_text", index),
            "content": _parts(item.get("content"), "reasoning_text", index),
        }
    raise ValidationError(
        f"item {index}: type {kind!r} is not supported (message, function_call, "
        "function_call_output, reasoning are)"
    )


def _parts(parts: Any, kind: str, index: int) -> list[dict[str, str]]:
    """A reasoning item's ``summary`` or ``content``: parts of ``kind`` with their text."""
    if parts is None:
        return []
    if not isinstance(parts, list) or not all(
        isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts
    ):
        raise ValidationError(f"item {index}: a reasoning item's parts need a string 'text'")
    return [{"type": kind, "text": p["text"]} for p in parts]


def _text(item: dict, index: int) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("input_text", "output_text", "text") or not isinstance(
                part.get("text"), str
            ):
                raise ValidationError(
                    f"item {index}: only text content parts are supported (input_text, output_text)"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ValidationError(f"item {index}: content must be a string or a list of parts")


class ConversationRef(fields.Field):
    """The conversation a response belongs to: its id, or ``{"id": ...}``; loads to the id."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, dict):
            value = value.get("id")
        if not isinstance(value, str) or not value:
            raise ValidationError("must be a conversation id, or an object with its 'id'")
        return value


class FunctionTool(Lenient):
    type = fields.String(required=True)
    name = fields.String(validate=validate.Regexp(FUNCTION_NAME))
    description = fields.String(allow_none=True)
    parameters = fields.Dict(allow_none=True)
    strict = fields.Boolean(allow_none=True)

    @validates_schema
    def _function_only(self, data: dict, **_: Any) -> None:
        if data["type"] != "function":
            raise ValidationError(
                f"the built-in tool {data['type']!r} is not supported; only function tools are",
                "type",
            )
        if not data.get("name"):
            raise ValidationError("a function tool needs a 'name'", "name")


class TextFormat(Lenient):
    type = fields.String(
        required=True, validate=validate.OneOf(["text", "json_object", "json_schema"])
    )
    name = fields.String(validate=validate.Regexp(FUNCTION_NAME))
    schema = fields.Dict(allow_none=True)
    description = fields.String(allow_none=True)
    strict = fields.Boolean(allow_none=True)


class TextOptions(Lenient):
    format = fields.Nested(TextFormat, allow_none=True)


class ReasoningOptions(Lenient):
    effort = effort_field()
    summary = fields.String(allow_none=True)  # accepted; the thinking comes whole, not summed up


class ResponseCreateSchema(Lenient):
    model = fields.String(required=True)
    input = ResponseInput(required=True)
    instructions = fields.String(allow_none=True)
    max_output_tokens = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1))
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    text = fields.Nested(TextOptions, allow_none=True)
    reasoning = fields.Nested(ReasoningOptions, allow_none=True)
    tools = fields.List(fields.Nested(FunctionTool), allow_none=True)
    tool_choice = ToolChoice(allow_none=True)
    parallel_tool_calls = fields.Boolean(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
    user = fields.String(allow_none=True)
    store = fields.Boolean(allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    conversation = ConversationRef(allow_none=True)
    stream = fields.Boolean(allow_none=True)
    background = fields.Boolean(allow_none=True)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        names = [t["name"] for t in data.get("tools") or []]
        choice = data.get("tool_choice")
        if choice == "required" and not names:
            raise ValidationError("'required' needs tools to call", "tool_choice")
        if choice not in (None, "none", "auto", "required") and choice not in names:
            raise ValidationError(f"no tool named {choice!r} is given", "tool_choice")
        if data.get("conversation") and data.get("previous_response_id"):
            raise ValidationError(
                "a response may continue a conversation or a previous response, not both",
                "conversation",
            )
        if data.get("conversation") and data.get("background"):
            # A background run's result is recorded by its worker, which keeps no conversation.
            raise ValidationError(
                "a background response cannot be part of a conversation", "conversation"
            )
        if data.get("background") and data.get("store") is False:
            raise ValidationError("a background response must be stored", "store")
        fmt = (data.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema" and not fmt.get("name"):
            raise ValidationError("a json_schema format needs a 'name'", "text.format.name")
