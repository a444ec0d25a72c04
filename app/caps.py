"""Per-request caps, checked before anything is queued: how much work one request may ask for.

Each cap is a setting (see the README). Prompt tokens of token-id prompts are counted here; text
is counted by the worker's tokenizer when the job arrives, before it takes a slot in the batch
(the front has no tokenizer), with the same limit, which travels in the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import APIError
from config.protocol import Prompt


@dataclass(frozen=True)
class Caps:
    """The caps of one front: MAX_REQUEST_CHOICES, MAX_EMBEDDING_INPUTS, MAX_REQUEST_TOKENS."""

    max_choices: int
    max_embedding_inputs: int
    max_request_tokens: int

    def check_choices(self, prompts: int, n: int) -> None:
        """At most MAX_REQUEST_CHOICES sequences (prompts × ``n``) in one request."""
        limit = self.max_choices
        if prompts * n > limit:
            what = f"{prompts} prompts × n = {n}" if prompts > 1 else f"n = {n}"
            raise APIError(
                400,
                f"This request asks for {prompts * n} choices ({what}); at most {limit} are "
                "allowed per request (MAX_REQUEST_CHOICES). Split it into several requests.",
                param="prompt" if prompts > 1 else "n",
                code="too_many_choices",
            )

    def check_inputs(self, count: int, param: str = "input") -> None:
        """At most MAX_EMBEDDING_INPUTS inputs in one embedding request (OpenAI allows 2,048),
        or documents (pairs) in one rerank (score) request."""
        limit = self.max_embedding_inputs
        if count > limit:
            raise APIError(
                400,
                f"This request has {count} inputs; at most {limit} are allowed per request "
                "(MAX_EMBEDDING_INPUTS).",
                param=param,
                code="too_many_inputs",
            )

    def check_token_ids(self, items: Sequence[Prompt], param: str) -> int:
        """The cap on prompt tokens, for the token-id items of ``items`` (text is counted by
        the worker). Returns the limit, which the job carries to the worker."""
        limit = self.max_request_tokens
        counted = sum(len(item) for item in items if isinstance(item, list))
        if counted > limit:
            raise APIError(
                400,
                f"This request holds {counted} prompt tokens; at most {limit} are allowed per "
                "request (MAX_REQUEST_TOKENS). Split it into several requests.",
                param=param,
                code="max_tokens_per_request",
            )
        return limit
