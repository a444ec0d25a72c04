"""Request schemas of the chat family: messages (with tool calls and tool results), tools,
``tool_choice``, ``response_format``, and the chat and edits requests.

Loaded data is normalized for the job: a message is ``{"role", "content": str}`` plus, for an
assistant's calls, ``tool_calls: [{"id", "name", "arguments"}]`` and, for a tool's result,
``tool_call_id``; the legacy ``functions`` / ``function_call`` become ``tools`` / ``tool_choice``.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.reasoning import TemplateKwargs, budget_field, effort_field
from app.schemas import GenerationSchema, Lenient
from config.protocol import Params

ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class MessageContent(fields.Field):
    """A message's content: a string or a list of text parts; loads to one string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            texts = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValidationError("only text content parts are supported")
                if not isinstance(part.get("text"), str):
                    raise ValidationError("a text content part needs a string 'text'")
                texts.append(part["text"])
            return "".join(texts)
        raise ValidationError("must be a string or a list of text content parts")


class FunctionCallSchema(Lenient):
    """A call as an assistant message carries it: a name and arguments (a JSON string)."""

    name = fields.String(required=True)
    arguments = fields.String(load_default="{}")


class ToolCallSchema(Lenient):
    id = fields.String(required=True)
    type = fields.String(load_default="function", validate=validate.OneOf(["function"]))
    function = fields.Nested(FunctionCallSchema, required=True)


class MessageSchema(Lenient):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = MessageContent(allow_none=True)
    name = fields.String(allow_none=True)
    tool_calls = fields.List(fields.Nested(ToolCallSchema), allow_none=True)
    tool_call_id = fields.String(allow_none=True)
    function_call = fields.Nested(FunctionCallSchema, allow_none=True)  # legacy

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        if data["role"] == "tool" and not data.get("tool_call_id"):
            raise ValidationError("a tool message needs 'tool_call_id'", "tool_call_id")
        if data["role"] == "function" and not data.get("name"):
            raise ValidationError("a function message needs 'name'", "name")
        if "content" not in data and data["role"] != "assistant":
            raise ValidationError("Missing data for required field.", "content")

    @post_load
    def _normalize(self, data: dict, **_: Any) -> dict:
        # "developer" is the newer name OpenAI gives the system role; "function" the older
        # name of "tool".
        role = {"developer": "system", "function": "tool"}.get(data["role"], data["role"])
        message: dict[str, Any] = {"role": role, "content": data.get("content") or ""}
        calls = [
            {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in data.get("tool_calls") or []
        ]
        if data.get("function_call"):
            call = data["function_call"]
            calls.append({"id": "call_0", "name": call["name"], "arguments": call["arguments"]})
        if calls and role == "assistant":
            message["tool_calls"] = calls
        if role == "tool":
            message["tool_call_id"] = data.get("tool_call_id") or data.get("name")
            if data.get("name"):
                message["name"] = data["name"]
        return message


class FunctionSchema(Lenient):
    name = fields.String(required=True, validate=validate.Regexp(FUNCTION_NAME))
    description = fields.String(allow_none=True)
    parameters = fields.Dict(allow_none=True)
    strict = fields.Boolean(allow_none=True)


class ToolSchema(Lenient):
    type = fields.String(required=True, validate=validate.OneOf(["function"]))
    function = fields.Nested(FunctionSchema, required=True)


class ToolChoice(fields.Field):
    """``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function": {"name"}}``
    (also the legacy ``function_call``'s ``{"name"}``); loads to a mode or a function's name."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if value in ("none", "auto", "required"):
            return value
        if isinstance(value, dict):
            function = value.get("function")
            name = function.get("name") if isinstance(function, dict) else value.get("name")
            if isinstance(name, str) and name:
                return name
        raise ValidationError(
            "must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name'}}"
        )


class JsonSchemaFormat(Lenient):
    name = fields.String(required=True, validate=validate.Regexp(FUNCTION_NAME))
    description = fields.String(allow_none=True)
    schema = fields.Dict(allow_none=True)
    strict = fields.Boolean(allow_none=True)


class ResponseFormatSchema(Lenient):
    type = fields.String(
        required=True, validate=validate.OneOf(["text", "json_object", "json_schema"])
    )
    json_schema = fields.Nested(JsonSchemaFormat, allow_none=True)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        if data["type"] == "json_schema" and not data.get("json_schema"):
            raise ValidationError("type 'json_schema' needs 'json_schema'", "json_schema")


class ChatCompletionSchema(GenerationSchema):
    messages = fields.List(
        fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1)
    )
    max_completion_tokens = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=1)
    )
    logprobs = fields.Boolean(load_default=False, allow_none=True)
    top_logprobs = fields.Integer(allow_none=True, strict=True, validate=validate.Range(0, 20))
    tools = fields.List(fields.Nested(ToolSchema), allow_none=True)
    tool_choice = ToolChoice(allow_none=True)
    parallel_tool_calls = fields.Boolean(allow_none=True)
    functions = fields.List(fields.Nested(FunctionSchema), allow_none=True)  # legacy
    function_call = ToolChoice(allow_none=True)  # legacy
    response_format = fields.Nested(ResponseFormatSchema, allow_none=True)
    reasoning_effort = effort_field()
    thinking_token_budget = budget_field()  # vLLM's extension
    chat_template_kwargs = TemplateKwargs()  # vLLM's extension

    @validates_schema
    def _top_logprobs_needs_logprobs(self, data: dict, **_: Any) -> None:
        if data.get("top_logprobs") is not None and not data.get("logprobs"):
            raise ValidationError("requires 'logprobs' to be true", "top_logprobs")

    @validates_schema
    def _tool_choice_names_a_tool(self, data: dict, **_: Any) -> None:
        if data.get("tools") and data.get("functions"):
            raise ValidationError("give 'tools' or the older 'functions', not both", "functions")
        legacy = data.get("function_call") is not None and not data.get("tools")
        param = "function_call" if legacy else "tool_choice"
        choice = data.get(param)
        names = [t["function"]["name"] for t in data.get("tools") or []]
        names += [f["name"] for f in data.get("functions") or []]
        if choice == "required" and not names:
            raise ValidationError("'required' needs tools to call", param)
        if choice not in (None, "none", "auto", "required") and choice not in names:
            raise ValidationError(f"no tool named {choice!r} is given", param)

    def logprob_params(self, data: dict[str, Any]) -> Params:
        top = data.get("top_logprobs") or 0
        return {"logprobs": top if data.get("logprobs") else None, "echo": False}

    @post_load
    def _normalize(self, data: dict, **_: Any) -> dict:
        # max_completion_tokens is OpenAI's newer name for max_tokens; it wins when both are set.
        if data.get("max_completion_tokens") is not None:
            data["max_tokens"] = data["max_completion_tokens"]
        tools = [t["function"] for t in data.get("tools") or []]
        data["legacy_functions"] = bool(data.get("functions")) and not tools
        if data["legacy_functions"]:  # the older names for the same thing: one call at most
            tools = list(data["functions"])
            data["tool_choice"] = data.get("function_call")
            data["parallel_tool_calls"] = False
        data["tools"] = [job_tool(t) for t in tools]
        default = "auto" if tools else "none"
        data["tool_choice"] = data.get("tool_choice") or default
        if data.get("parallel_tool_calls") is None:
            data["parallel_tool_calls"] = True
        data["json_schema"] = _json_schema(data.get("response_format"))
        return data


def job_tool(function: dict) -> dict:
    """A request's function as the job's Tool entry: name, parameters, description."""
    tool = {"name": function["name"], "parameters": function.get("parameters") or {}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _json_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema the reply must follow: ``{}`` (any object) for ``json_object``, None for
    text."""
    kind = (response_format or {}).get("type", "text")
    if kind == "json_object":
        return {}
    if kind == "json_schema" and response_format is not None:
        schema: dict[str, Any] = response_format["json_schema"].get("schema") or {}
        return schema
    return None


class EditSchema(GenerationSchema):
    """The legacy edits API: an instruction applied to an input, through the chat template."""

    input = fields.String(load_default="", allow_none=True)
    instruction = fields.String(required=True)

    @validates_schema
    def _no_stream(self, data: dict, **_: Any) -> None:
        if data.get("stream"):
            raise ValidationError("the edits API does not stream", "stream")
