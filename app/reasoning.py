"""How a request steers a thinking model's reasoning, as its chat job carries it.

- ``reasoning_effort`` (OpenAI's; the Responses API's ``reasoning.effort``): for a model with a
  ``reasoning_format``, a thinking budget in tokens (:meth:`ModelSpec.thinking_budget`), and for
  ``none`` also ``enable_thinking: false`` for its chat template, as Qwen3's reads it. A model
  that does not think ignores it, as OpenAI clients send it to any model.
- ``thinking_token_budget`` (vLLM's): the budget itself; it wins over the effort's.
- ``chat_template_kwargs`` (vLLM's): more variables for any chat model's template; the client's
  ``enable_thinking`` wins over the effort's.

The worker forces the end of the thinking once the reply has thought its budget
(:mod:`workers.engine.reasoning`).
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from config.protocol import JobOptions, Params
from config.registry import REASONING_EFFORTS, ModelSpec

# What the server itself passes to apply_chat_template: a client may not set these.
RESERVED_TEMPLATE_KWARGS = frozenset(
    {
        "conversation",
        "messages",
        "tools",
        "documents",
        "chat_template",
        "add_generation_prompt",
        "continue_final_message",
        "sanitize_control_tokens",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)


class TemplateKwargs(fields.Dict):
    """``chat_template_kwargs``: an object of template variables, none the server's own."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(), allow_none=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        taken = sorted(set(loaded) & RESERVED_TEMPLATE_KWARGS)
        if taken:
            raise ValidationError(f"{taken[0]!r} is set by the server, not by a request")
        return loaded


def effort_field() -> fields.String:
    return fields.String(allow_none=True, validate=validate.OneOf(REASONING_EFFORTS))


def budget_field() -> fields.Integer:
    return fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0))


def steer_reasoning(
    spec: ModelSpec,
    effort: str | None,
    budget: int | None,
    template_kwargs: dict[str, Any] | None,
    params: Params,
    options: JobOptions,
) -> None:
    """Put a request's reasoning controls in its job's ``params`` and ``options``."""
    variables = dict(template_kwargs or {})
    if spec.reasoning_format != "none":
        if effort is not None:
            if budget is None:
                budget = spec.thinking_budget(effort)
            if effort == "none":
                variables.setdefault("enable_thinking", False)
        if budget is not None:
            params["thinking_token_budget"] = budget
    if variables:
        options["chat_template_kwargs"] = variables
