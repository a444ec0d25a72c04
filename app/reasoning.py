"""How a request steers a thinking model's reasoning, as its chat job carries it.

- ``reasoning_effort`` (OpenAI's; the Responses API's ``reasoning.effort``): for a model with a
  ``reasoning_format``, a thinking budget in tokens (:meth:`ModelSpec.thinking_budget`), and for
  ``none`` also ``enable_thinking: false`` for its chat template, as Qwen3's reads it. A model
  that does not think ignores it, as OpenAI clients send it to any model.
- ``thinking_token_budget`` (vLLM's): the budget itself (-1: none); it wins over the effort's.
- ``chat_template_kwargs`` (vLLM's): more variables for any chat model's template; the client's
  ``enable_thinking`` wins over the effort's.

The worker forces the end of the thinking once the reply has thought its budget
(:mod:`workers.engine.reasoning`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields, validate

from config.protocol import JobOptions, Params
from config.registry import REASONING_EFFORTS, ModelSpec

# What the server itself passes to apply_chat_template: a client may not set these.
RESERVED_TEMPLATE_KWARGS = frozenset(
    {
        "conversation",
        "conversations",  # transformers' own renderer's
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
    """``thinking_token_budget``: tokens >= 0, or -1 (vLLM's "no budget")."""
    return fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=-1))


@dataclass(frozen=True)
class ReasoningControls:
    """What a request says of the thinking: its effort, its budget, its template variables."""

    effort: str | None = None
    budget: int | None = None
    template_kwargs: dict[str, Any] | None = None

    @classmethod
    def of_chat(cls, data: dict[str, Any]) -> ReasoningControls:
        """A chat request's (loaded)."""
        return cls(
            data.get("reasoning_effort"),
            data.get("thinking_token_budget"),
            data.get("chat_template_kwargs"),
        )

    def apply(self, spec: ModelSpec, params: Params, options: JobOptions) -> None:
        """Put them in the job's ``params`` and ``options``, for the model ``spec``."""
        variables = dict(self.template_kwargs or {})
        budget = None if self.budget == -1 else self.budget
        if spec.reasoning_format != "none":
            if self.effort is not None:
                if budget is None:
                    budget = spec.thinking_budget(self.effort)
                if self.effort == "none":
                    variables.setdefault("enable_thinking", False)
            if budget is not None:
                params["thinking_token_budget"] = budget
        if variables:
            options["chat_template_kwargs"] = variables
