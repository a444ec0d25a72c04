"""The request schemas of ``/tokenize`` and ``/detokenize`` (vLLM's shapes)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.chat_schemas import MessageSchema, ToolSchema, job_tool
from app.reasoning import TemplateKwargs
from app.schemas import Lenient


class TokenizeSchema(Lenient):
    """A prompt, or a chat's messages (through the model's template, as a chat request)."""

    model = fields.String(required=True)
    prompt = fields.String()
    messages = fields.List(fields.Nested(MessageSchema), validate=validate.Length(min=1))
    # The text's special tokens (BOS...); a chat's come from its template. vLLM's defaults.
    add_special_tokens = fields.Boolean(load_default=None, allow_none=True)
    # A chat: the assistant's turn opened after it (as a chat request has it), and the tools
    # its template is given (as a chat request with tools).
    add_generation_prompt = fields.Boolean(load_default=True)
    tools = fields.List(fields.Nested(ToolSchema), allow_none=True)
    chat_template_kwargs = TemplateKwargs()  # as a chat request's
    return_token_strs = fields.Boolean(load_default=False)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        if ("prompt" in data) == ("messages" in data):
            raise ValidationError("give either 'prompt' or 'messages'", "prompt")
        if data.get("add_special_tokens") and "messages" in data:
            raise ValidationError(
                "a chat's special tokens come from its template; leave this out",
                "add_special_tokens",
            )

    @post_load
    def _tools(self, data: dict, **_: Any) -> dict:
        data["tools"] = [job_tool(t["function"]) for t in data.get("tools") or []]
        return data


class DetokenizeSchema(Lenient):
    model = fields.String(required=True)
    tokens = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0)), required=True)
