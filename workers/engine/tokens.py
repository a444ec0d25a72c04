"""Tokenize and detokenize jobs, answered by an engine's tokenizer at once, outside its batch
(the worker takes them from the model's quick list, see workers/quick.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config.events import Tokenized
from config.protocol import DETOKENIZE, TOKENIZE, Job
from workers.engine.checks import check_text, tokenize
from workers.engine.errors import InvalidRequest, JobFailed


def tokenized(
    job: Job,
    tokenizer: Any,
    vocab_size: int,
    max_model_len: int,
    chat: Callable[[Job], list[int]] | None = None,
) -> Tokenized:
    """A (de)tokenize job's answer. ``chat`` renders a chat's messages through the model's
    template as a chat request would (None: the model takes no chat); raises
    :class:`InvalidRequest` for content the tokenizer cannot take."""
    kind = job.get("kind")
    prompt = (job.get("prompts") or [""])[0]
    if kind == DETOKENIZE:
        ids = tokenize(tokenizer, prompt, vocab_size, "prompts[0]")
        return {"tokens": ids, "max_model_len": max_model_len, "text": tokenizer.decode(ids)}
    if kind != TOKENIZE:
        raise JobFailed(f"Not a tokenize job: {kind!r}.")
    if job.get("messages") is not None:
        if chat is None:
            raise InvalidRequest("This model takes no chat messages.", "messages")
        ids = chat(job)
    else:
        if not isinstance(prompt, str):
            raise InvalidRequest("The {param} must be text.", "prompts[0]")
        special = job.get("add_special_tokens", True)
        text = check_text(prompt, "prompts[0]")
        ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])
    result: Tokenized = {"tokens": ids, "max_model_len": max_model_len}
    if job.get("token_strs"):
        result["token_strs"] = list(tokenizer.convert_ids_to_tokens(ids))
    return result
