"""The checks a job's content passes before it takes a slot: text that can be encoded, token
ids inside the vocabulary, prompts that fit the context and the request's token limit. Each raises
an :class:`InvalidRequest` (or one of its kinds) naming the job's field at fault."""

from __future__ import annotations

from typing import Any

from config.protocol import Prompt
from workers.engine.errors import ContextLengthExceeded, InvalidRequest, TooManyTokens


def check_text(text: str, field: str) -> str:
    """``text`` if it can be encoded (JSON may carry lone UTF-16 surrogates, which no tokenizer
    takes); else :class:`InvalidRequest`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            "The {param} is not valid Unicode: a lone surrogate "
            f"(U+{ord(text[exc.start]):04X}) at character {exc.start}.",
            field,
            character=exc.start,
        ) from None
    return text


def check_ids(tokens: list[Any], vocab_size: int, field: str) -> list[int]:
    if any(
        not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab_size for t in tokens
    ):
        raise InvalidRequest(
            f"Token ids in the {{param}} must be in [0, {vocab_size}).", field, vocab=vocab_size
        )
    return tokens


def tokenize(
    tokenizer: Any,
    item: Prompt,
    vocab_size: int,
    field: str,
    max_length: int | None = None,
) -> list[int]:
    """A text (tokenized with the tokenizer's special tokens, truncated to ``max_length`` when
    given) or a list of token ids, checked."""
    if isinstance(item, str):
        cut = {"truncation": True, "max_length": max_length} if max_length else {}
        return list(tokenizer(check_text(item, field), **cut)["input_ids"])
    if not isinstance(item, list):
        raise InvalidRequest("The {param} must be text or a list of token ids.", field)
    return check_ids(item, vocab_size, field)


def check_logit_bias(bias: tuple[tuple[int, float], ...], vocab_size: int) -> None:
    if any(not 0 <= token < vocab_size for token, _ in bias):
        raise InvalidRequest(
            f"The {{param}} keys must be token ids in [0, {vocab_size}).",
            "params.logit_bias",
            vocab=vocab_size,
        )


def check_context(
    prompt: list[int], max_tokens: int | None, context_length: int, field: str
) -> int:
    """Room left in the context after ``prompt``; :class:`ContextLengthExceeded` if the prompt
    (plus ``max_tokens``, when given) does not fit."""
    room = context_length - len(prompt)
    if max_tokens is not None and max_tokens > room:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. "
            f"However, you requested {len(prompt) + max_tokens} tokens "
            f"({len(prompt)} in the prompt, {max_tokens} for the completion). "
            "Please reduce the prompt or the completion length.",
            "params.max_tokens" if room > 0 else field,
            limit=context_length,
            prompt_tokens=len(prompt),
            max_tokens=max_tokens,
        )
    if room <= 0:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. "
            f"However, your prompt has {len(prompt)} tokens.",
            field,
            limit=context_length,
            prompt_tokens=len(prompt),
        )
    return room


def check_request_tokens(total: int, limit: int | None, field: str) -> None:
    """At most ``limit`` prompt tokens in one request (MAX_REQUEST_TOKENS)."""
    if limit is not None and total > limit:
        raise TooManyTokens(
            f"This request holds {total} prompt tokens; at most {limit} are allowed per "
            "request. Split it into several requests.",
            field,
            limit=limit,
            prompt_tokens=total,
        )
