"""What the generation engine tracks: jobs, and their sequences (one per prompt and choice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from config.events import Echo, EventSequence, TokenLogprob, Usage
from config.protocol import FinishReason
from workers.engine.batch import BatchState
from workers.engine.drafts import Drafter
from workers.engine.io import Ticket
from workers.engine.reasoning import ReasoningParser
from workers.engine.sampling import SamplingParams
from workers.engine.text import TextStream
from workers.engine.tools import ToolCallParser

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
CALLS_ONLY = "calls"  # Sequence.forced: the reply is tool calls and nothing else
JSON_ONLY = "json"  # Sequence.forced: the reply is one JSON value
# Why a sequence ended: a finish reason its client sees, or its job ended without one.
Ending = FinishReason | Literal["cancelled", "error"]


@dataclass
class JobState:
    """A generation job as its engine runs it: its sequences, its events, its ticket."""

    id: str
    ticket: Ticket
    events: EventSequence
    sequences: list[Sequence] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    started: float | None = None  # when its first prompt joined the batch (monotonic)
    key: str = ""  # its API key's owner hash, and that key's weight (config/lanes.py)
    weight: float = 1.0

    @property
    def finished(self) -> bool:
        return all(s.finish_reason is not None for s in self.sequences)

    @property
    def served(self) -> int:
        """The tokens it cost so far, prompt and reply (what its API key pays for in fair
        shares)."""
        return self.prompt_tokens + sum(len(s.generated) for s in self.sequences)

    def usage(self) -> Usage:
        completion = sum(len(s.generated) for s in self.sequences)
        thought = sum(s.reasoning.tokens for s in self.sequences if s.reasoning is not None)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": thought},
        }


@dataclass
class Sequence:
    job: JobState
    index: int
    prompt: list[int]
    params: SamplingParams
    max_new_tokens: int
    text: TextStream
    generator: torch.Generator | None
    generated: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    unsent_logprobs: list[TokenLogprob] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)  # generated token -> times
    echo: Echo | None = None  # sent with the sequence's first event when the job asked for echo
    finish_reason: Ending | None = None
    adapter: str = BASE  # the LoRA adapter its rows run through (BASE: none)
    matcher: Any = None  # llguidance's, when a grammar constrains the reply
    # What the reply must be, whatever happens to its grammar: CALLS_ONLY (only calls, under a
    # required or named tool_choice) or JSON (a JSON value, under response_format); checked
    # as the reply streams and when it ends (see workers.engine.output).
    forced: str | None = None
    reply: str = ""  # the text sent so far, kept for a JSON reply's final check
    tools: ToolCallParser | None = None  # splits tool calls from the text, when tools are on
    reasoning: ReasoningParser | None = None  # splits the thinking from the answer (a chat's)
    bulk: bool = False  # low priority: runs in capacity interactive work leaves (see scheduler)
    resumed: list[int] | None = None  # after a preemption: prompt and generated tokens
    # Keys and values it has before its prefill: the chunks of a long prompt prefilled so far
    # (one row; see workers.engine.prefill), or the prefix cache's blocks for its start.
    part: BatchState | None = None
    prefix: list[torch.Tensor] | None = None
    cached: int = 0  # tokens of its prompt found in the prefix cache
    kept: int = 0  # tokens of its prompt its own prefill has put in the prefix cache
    looked_up: bool = False  # the prefix cache was asked for it (once per prefill)
    drafter: Drafter | None = None  # its n-grams, once it has been drafted for (speculation)

    @property
    def answering(self) -> bool:
        """Whether the reply is past its thinking (a model that does not think always is)."""
        return self.reasoning is None or self.reasoning.answering

    @property
    def constrained(self) -> bool:
        """Whether its grammar masks its next token: not while it thinks, except for the
        reply's first token, which may open the thinking instead."""
        return self.matcher is not None and (
            self.answering or self.reasoning is not None and self.reasoning.opening is not None
        )

    def context(self) -> list[int]:
        """The tokens its next prefill reads: the prompt, or, after a preemption, the prompt
        and what it generated (whose next token then continues it exactly)."""
        return self.resumed if self.resumed is not None else self.prompt

    @property
    def key(self) -> str:
        return self.job.key

    @property
    def weight(self) -> float:
        return self.job.weight

    @property
    def prefilled(self) -> int:
        """Tokens of its context whose keys and values it already has."""
        if self.part is not None:
            return self.part.mask.shape[1]
        return self.cached if self.prefix else 0

    @property
    def to_prefill(self) -> int:
        return len(self.context()) - self.prefilled

    @property
    def wants_prompt_logprobs(self) -> bool:  # on its first prefill only
        return self.params.echo and self.params.logprobs is not None and self.resumed is None


def adapter_names(rows: list[Sequence], adapters: bool) -> dict[str, Any]:
    """A forward pass's per-row adapters, for a PEFT model (``adapters``); nothing otherwise."""
    return {"adapter_names": [s.adapter for s in rows]} if adapters else {}
