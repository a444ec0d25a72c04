"""Which waiting sequences join the batch at a step, and which bulk rows give way.

Interactive sequences come first. Bulk sequences (batch lines, the ``flex`` tier) fill what
capacity interactive ones leave: while interactive sequences wait, bulk rows keep at most
``bulk_share`` of the batch, and any above it are preempted (their cache dropped; they keep their
tokens and join again later, prefilling prompt and generated tokens, which continues them
exactly), so an interactive sequence waits behind bulk work for at most one step.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol


class Seq(Protocol):
    bulk: bool
    finish_reason: str | None

    def context(self) -> list[int]: ...


class Scheduler:
    def __init__(self, max_batch_size: int, prefill_tokens: int, bulk_share: float) -> None:
        self.max_batch_size = max_batch_size
        self.prefill_tokens = prefill_tokens
        self.bulk_slots = math.floor(bulk_share * max_batch_size)
        self.interactive: deque[Any] = deque()
        self.bulk: deque[Any] = deque()

    def add(self, seqs: list[Any]) -> None:
        for seq in seqs:
            (self.bulk if seq.bulk else self.interactive).append(seq)

    def waiting(self) -> list[Any]:
        return list(self.interactive) + list(self.bulk)

    def drop_finished(self) -> None:
        self.interactive = deque(s for s in self.interactive if s.finish_reason is None)
        self.bulk = deque(s for s in self.bulk if s.finish_reason is None)

    def preempt(self, rows: list[Any]) -> list[int]:
        """The running rows (indices) that give way this step: bulk rows above the bulk share,
        the newest first, as many as interactive sequences wait beyond the free slots."""
        free = self.max_batch_size - len(rows)
        short = sum(s.finish_reason is None for s in self.interactive) - free
        bulk_rows = [i for i, s in enumerate(rows) if s.bulk and s.finish_reason is None]
        count = min(short, len(bulk_rows) - self.bulk_slots)
        return bulk_rows[-count:] if count > 0 else []

    def requeue(self, seqs: list[Any]) -> None:
        """Preempted rows wait first in line among the bulk ones."""
        self.bulk.extendleft(reversed(seqs))

    def take(self, running: int) -> list[Any]:
        """Waiting sequences for one prefill: interactive first, then bulk, as many as fit the
        batch and the token budget; bulk only if no interactive one is left waiting."""
        taken: list[Any] = []
        tokens = 0
        room = self.max_batch_size - running
        for line in (self.interactive, self.bulk):
            if line is self.bulk and any(s.finish_reason is None for s in self.interactive):
                break
            while line and len(taken) < room:
                size = len(line[0].context())
                if taken and tokens + size > self.prefill_tokens:
                    return [s for s in taken if s.finish_reason is None]
                taken.append(line.popleft())
                tokens += size
        return [s for s in taken if s.finish_reason is None]

    def bulk_room(self, running: int) -> int:
        """How many more bulk sequences the engine would run now: none while interactive ones
        wait; else the slots nothing else will take."""
        if any(s.finish_reason is None for s in self.interactive):
            return 0
        return max(0, self.max_batch_size - running - len(self.bulk))
