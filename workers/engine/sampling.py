"""Per-sequence sampling parameters and next-token choice.

Each sequence keeps its own parameters; the batch shares one forward pass and each row of its
logits goes through :func:`choose_token`. This is where per-request logits processing (penalties,
logit_bias, logprobs) plugs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: no top-k cut
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    ignore_eos: bool = False  # vLLM's extension: run to max_tokens (benchmarks)

    @classmethod
    def from_job(cls, params: dict[str, Any]) -> SamplingParams:
        stop = params.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        return cls(
            max_tokens=params.get("max_tokens"),
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            top_k=int(params.get("top_k") or 0),
            stop=tuple(s for s in stop if s),
            seed=params.get("seed"),
            ignore_eos=bool(params.get("ignore_eos", False)),
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def make_generator(seed: int | None) -> torch.Generator | None:
    """A private RNG for a seeded sequence, so that its output does not depend on its batch."""
    if seed is None:
        return None
    return torch.Generator().manual_seed(seed)


def choose_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """Pick the next token from one row of logits (shape ``[vocab]``)."""
    if params.greedy:
        return int(torch.argmax(logits))
    logits = logits.float() / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop tokens once the mass before them already reaches top_p; the first always stays.
        drop = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= params.top_p
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = torch.softmax(logits, dim=-1)
    # Sample on the CPU with the sequence's own generator (generators are per device).
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
