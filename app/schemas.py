"""Request schemas (marshmallow): the OpenAI request bodies this server accepts.

Unknown fields are ignored (and logged), as OpenAI clients send fields a server may not know;
a wrong type or an out-of-range value is a 400 that names the parameter.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from app.errors import APIError
from config.protocol import Params

log = logging.getLogger(__name__)

COMPLETION_MAX_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions
# A logit_bias key: ASCII digits only (str.isdigit also takes "²", which int() refuses).
TOKEN_ID = re.compile(r"[0-9]{1,9}")


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _log_unknown(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                log.info("%s: ignoring unknown fields %s", type(self).__name__, unknown)
        return data


class StringOrList(fields.Field):
    """A string, or a list of strings (``stop``, ``prompt``, ``input``); loads to a list."""

    def __init__(self, max_items: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValidationError("must be a string or a list of strings")
        if self.max_items is not None and len(items) > self.max_items:
            raise ValidationError(f"must have at most {self.max_items} items")
        return items


class Prompt(fields.Field):
    """A prompt: text, a list of texts, token ids, or a list of token-id lists; loads to a list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value:
            if all(isinstance(v, str) for v in value):
                return value
            if all(_is_token_id(v) for v in value):
                return [value]
            if all(isinstance(v, list) and v and all(_is_token_id(t) for t in v) for v in value):
                return value
        raise ValidationError(
            "must be a string, a list of strings, a list of token ids or a list of such lists"
        )


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class StreamOptionsSchema(Lenient):
    include_usage = fields.Boolean(load_default=False)


def _penalty() -> fields.Float:
    return fields.Float(load_default=0.0, allow_none=True, validate=validate.Range(min=-2, max=2))


class GenerationSchema(Lenient):
    model = fields.String(required=True)
    max_tokens = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1))
    temperature = fields.Float(
        load_default=1.0, allow_none=True, validate=validate.Range(min=0, max=2)
    )
    top_p = fields.Float(load_default=1.0, allow_none=True, validate=validate.Range(min=0, max=1))
    top_k = fields.Integer(load_default=-1, strict=True, validate=validate.Range(min=-1))
    n = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=128))
    stop = StringOrList(max_items=4, allow_none=True)
    stream = fields.Boolean(load_default=False, allow_none=True)
    seed = fields.Integer(
        allow_none=True, strict=True, validate=validate.Range(min=-(2**63), max=2**63 - 1)
    )
    user = fields.String(allow_none=True)
    ignore_eos = fields.Boolean(load_default=False)  # vLLM extension, for benchmarks
    presence_penalty = _penalty()
    frequency_penalty = _penalty()
    repetition_penalty = fields.Float(  # transformers' / vLLM's extension
        load_default=1.0, allow_none=True, validate=validate.Range(min=0, min_inclusive=False)
    )
    logit_bias = fields.Dict(
        keys=fields.String(),
        values=fields.Float(validate=validate.Range(min=-100, max=100)),
        allow_none=True,
    )
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    # "flex": runs at the priority of batch lines (OpenAI's cheaper, slower tier); others as usual.
    service_tier = fields.String(allow_none=True)

    @validates_schema
    def _check_logit_bias(self, data: dict, **_: Any) -> None:
        for key in data.get("logit_bias") or {}:
            if not TOKEN_ID.fullmatch(key):
                raise ValidationError(f"keys must be token ids, not {key[:20]!r}", "logit_bias")

    def sampling(self, data: dict[str, Any]) -> Params:
        """The parameters the engine needs, with OpenAI's defaults filled in."""
        top_p = 1.0 if data.get("top_p") is None else data["top_p"]
        temperature = 1.0 if data.get("temperature") is None else data["temperature"]
        params: Params = {
            "max_tokens": data.get("max_tokens"),
            "temperature": 0.0 if top_p == 0 else temperature,
            "top_p": top_p,
            "top_k": data["top_k"],
            "stop": data.get("stop") or [],
            "seed": data.get("seed"),
            "ignore_eos": data["ignore_eos"],
            "presence_penalty": data.get("presence_penalty") or 0.0,
            "frequency_penalty": data.get("frequency_penalty") or 0.0,
            "repetition_penalty": data.get("repetition_penalty") or 1.0,
            "logit_bias": {int(k): v for k, v in (data.get("logit_bias") or {}).items()},
            "n": data["n"],
        }
        params.update(self.logprob_params(data))
        return params

    def logprob_params(self, data: dict[str, Any]) -> Params:
        """``logprobs`` (how many alternatives, None for none) and ``echo``."""
        return {"logprobs": None, "echo": False}

    @staticmethod
    def include_usage(data: dict[str, Any]) -> bool:
        return bool((data.get("stream_options") or {}).get("include_usage"))


class CompletionSchema(GenerationSchema):
    prompt = Prompt(required=True)
    echo = fields.Boolean(load_default=False, allow_none=True)
    logprobs = fields.Integer(allow_none=True, strict=True, validate=validate.Range(0, 5))
    # 0 is allowed here: with echo and logprobs it scores a prompt without generating.
    max_tokens = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0))
    suffix = fields.String(allow_none=True)
    best_of = fields.Integer(allow_none=True, strict=True)

    @validates_schema
    def _unsupported(self, data: dict, **_: Any) -> None:
        if data.get("suffix"):
            raise ValidationError("insertion (suffix) is not supported", "suffix")
        if data.get("best_of") not in (None, 1, data.get("n", 1)):
            raise ValidationError("best_of other than n is not supported", "best_of")

    def logprob_params(self, data: dict[str, Any]) -> Params:
        return {"logprobs": data.get("logprobs"), "echo": bool(data.get("echo"))}

    def sampling(self, data: dict[str, Any]) -> Params:
        params = super().sampling(data)
        if params["max_tokens"] is None:  # OpenAI's default for completions (chat: the context)
            params["max_tokens"] = COMPLETION_MAX_TOKENS
        return params


class EmbeddingSchema(Lenient):
    model = fields.String(required=True)
    input = Prompt(required=True)
    encoding_format = fields.String(
        load_default="float", validate=validate.OneOf(["float", "base64"])
    )
    dimensions = fields.Integer(strict=True)
    user = fields.String(allow_none=True)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        if any(isinstance(text, str) and not text for text in data.get("input", [])):
            raise ValidationError("must not contain an empty string", "input")
        if "dimensions" in data:
            raise ValidationError("this model does not support 'dimensions'", "dimensions")


def load_request(schema: Schema, body: Any) -> dict:
    """Validate a request body; raise a 400 :class:`APIError` naming the first bad parameter."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:
        return schema.load(body)
    except ValidationError as exc:
        param, message = _first_error(exc.messages)
        raise APIError(400, f"Invalid value for '{param}': {message}", param=param) from None


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested error dict to (dotted.param, first message)."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        name = str(key) if key != "_schema" else ""
        if path and name:
            name = f"{path}[{name}]" if name.isdigit() else f"{path}.{name}"
        return _first_error(value, name or path)
    if isinstance(messages, list) and messages:
        return (
            _first_error(messages[0], path)
            if not isinstance(messages[0], str)
            else (path, messages[0])
        )
    return path, str(messages)
