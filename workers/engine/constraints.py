"""Constrained decoding in the batched engine: each constrained row has an llguidance matcher;
before sampling, the allowed-token masks of every constrained row are computed together (in
llguidance's threads) and applied to their logits, so constrained and free rows share the
forward pass."""

from __future__ import annotations

import logging
from typing import Any

import torch

from workers.engine.errors import InvalidRequest

log = logging.getLogger(__name__)

_SHIFTS = torch.arange(32, dtype=torch.int32)
COMPILED_GRAMMARS = 256  # compiled grammars kept per model


class Constraints:
    """What one model needs for constrained decoding, set up once when the model loads (the
    tokenizer's analysis takes about a second for a 49k vocabulary)."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: set[int]) -> None:
        import llguidance
        import llguidance.hf

        self._llguidance = llguidance
        self.vocab_size = vocab_size
        self.tokenizer = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=vocab_size, eos_token=sorted(eos_ids) or None
        )
        self.executor = llguidance.LLExecutor()
        self._compiled: dict[str, Any] = {}  # grammar -> its matcher before any token

    def matcher(self, grammar: str, param: str) -> Any:
        """A fresh matcher for one sequence; :class:`InvalidRequest` if the grammar fails.

        Each grammar is compiled once: later sequences get a copy of its pristine matcher."""
        pristine = self._compiled.get(grammar)
        if pristine is None:
            pristine = self._llguidance.LLMatcher(self.tokenizer, grammar)
            if pristine.is_error():
                raise InvalidRequest(
                    f"The schema cannot be used for constrained decoding: {pristine.get_error()}",
                    param,
                )
            if len(self._compiled) >= COMPILED_GRAMMARS:
                self._compiled.pop(next(iter(self._compiled)))  # the oldest
            self._compiled[grammar] = pristine
        return pristine.deep_copy()

    def mask(self, rows: list[int], matchers: list[Any], logits: torch.Tensor) -> None:
        """Set to -inf, in ``logits`` (one row per sequence), every token that ``matchers``
        (those of ``rows``) do not allow next."""
        import llguidance.torch

        bitmask = llguidance.torch.allocate_token_bitmask(len(rows), self.vocab_size)
        llguidance.torch.fill_next_token_bitmask_par(
            self.executor, [(m, i) for i, m in enumerate(matchers)], bitmask
        )
        width = logits.shape[-1]
        allowed = ((bitmask.unsqueeze(-1) >> _SHIFTS) & 1).view(len(rows), -1)[:, :width]
        index = torch.tensor(rows, device=logits.device)
        blocked = allowed.to(logits.device) == 0
        logits[index] = logits[index].masked_fill(blocked, float("-inf"))


def load_constraints(
    tokenizer: Any, vocab_size: int, eos_ids: set[int], name: str
) -> Constraints | None:
    """The model's :class:`Constraints`, or None if its tokenizer cannot be used (llguidance needs
    a fast tokenizer); then requests that need a grammar are refused."""
    try:
        return Constraints(tokenizer, vocab_size, eos_ids)
    except Exception as exc:  # noqa: BLE001 - the model still serves everything else
        log.warning("model %s: no constrained decoding (%s)", name, exc)
        return None
