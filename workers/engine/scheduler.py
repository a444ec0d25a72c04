"""Which waiting sequences join the batch at a step, and which bulk rows give way.

Interactive sequences come first. Bulk sequences (batch lines, the ``flex`` tier) use the capacity
interactive ones leave: while any interactive sequence waits or runs, bulk rows keep at most
``bulk_share`` of the batch (fewer rows also keep each step short, so interactive tokens come
fast); any above it are preempted (their cache dropped; they keep their tokens and join again
later, prefilling prompt and generated tokens, which continues them exactly). So an interactive
sequence waits behind bulk work for at most one step; with no interactive work at all, bulk
fills the whole batch.

Among interactive sequences of several API keys, the batch is shared by weight: the waiting ones
join round the keys, the key with the fewest rows for its weight first, each key's in the order
they came (the queue before the engine shares its turns the same way, see config/lanes.py).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Seq(Protocol):
    bulk: bool
    finish_reason: str | None
    part: Any  # its prefill is part-way done (a long prompt's chunks)
    job: Any  # the job it is a choice of

    @property
    def key(self) -> str: ...  # its API key's owner hash
    @property
    def weight(self) -> float: ...  # that key's weight

    def context(self) -> list[int]: ...


def _live(seqs: Iterable[Any]) -> list[Any]:
    return [s for s in seqs if s.finish_reason is None]


class Scheduler:
    def __init__(self, max_batch_size: int, bulk_share: float) -> None:
        self.max_batch_size = max_batch_size
        self.bulk_slots = math.floor(bulk_share * max_batch_size)
        self.interactive: deque[Any] = deque()
        self.bulk: deque[Any] = deque()

    def add(self, seqs: list[Any]) -> None:
        for seq in seqs:
            (self.bulk if seq.bulk else self.interactive).append(seq)

    def waiting(self) -> list[Any]:
        return list(self.interactive) + list(self.bulk)

    def drop_finished(self) -> None:
        self.interactive = deque(_live(self.interactive))
        self.bulk = deque(_live(self.bulk))

    def bulk_limit(self, rows: list[Any]) -> int:
        """How many bulk rows may run: the whole batch when there is no interactive work, else
        the bulk share."""
        interactive = _live(self.interactive) or [s for s in _live(rows) if not s.bulk]
        return self.bulk_slots if interactive else self.max_batch_size

    def preempt(self, rows: list[Any]) -> list[int]:
        """The running rows (indices) that give way this step: bulk rows above the bulk limit,
        the newest first."""
        bulk_rows = [i for i, s in enumerate(rows) if s.bulk and s.finish_reason is None]
        count = len(bulk_rows) - self.bulk_limit(rows)
        return bulk_rows[-count:] if count > 0 else []

    def requeue(self, seqs: list[Any]) -> None:
        """Preempted rows wait first in line among the bulk ones."""
        self.bulk.extendleft(reversed(seqs))

    def resume_first(self, seq: Any) -> None:
        """A sequence part-way through its prefill goes on first among its own kind."""
        (self.bulk if seq.bulk else self.interactive).appendleft(seq)

    def take(
        self, rows: list[Any], budget: int, cost: Callable[[Any], tuple[int, bool]]
    ) -> list[Any]:
        """Waiting sequences for one prefill: interactive first, then bulk up to its limit, as
        many as fit the batch and ``budget`` tokens. ``cost`` tells of a sequence the tokens it
        would prefill and whether it goes alone (a long prompt, prefilled in chunks)."""
        self._share(rows)
        taken: list[Any] = []
        tokens = 0
        room = self.max_batch_size - len(rows)
        bulk_room = self.bulk_limit(rows) - sum(s.bulk for s in _live(rows))
        for line in (self.interactive, self.bulk):
            if line is self.bulk:
                if any(s.finish_reason is None for s in self.interactive):
                    break  # interactive ones left waiting: no bulk joins before them
                room = min(room, len(taken) + bulk_room)
            while line and len(taken) < room:
                if line[0].finish_reason is not None:
                    line.popleft()
                    continue
                size, alone = cost(line[0])
                if taken and (alone or tokens + size > budget):
                    return taken
                taken.append(line.popleft())
                tokens += size
                if alone:
                    return taken
        return taken

    def _share(self, rows: list[Any]) -> None:
        """Put the waiting interactive sequences in fair order when several keys wait: round
        the keys, fewest rows running and taken for the key's weight first (ties: the key that
        came first), each key's own in the order they came, a job's choices together. One
        part-way through its prefill stays first."""
        line = self.interactive
        head = 1 if line and line[0].part is not None else 0
        keys: dict[str, deque[Any]] = {}
        for seq in list(line)[head:]:
            keys.setdefault(seq.key, deque()).append(seq)
        if len(keys) < 2:
            return
        load = dict.fromkeys(keys, 0.0)
        for seq in _live(rows):
            if not seq.bulk and seq.key in load:
                load[seq.key] += 1 / seq.weight
        turns = [(load[key], order, key) for order, key in enumerate(keys)]
        heapq.heapify(turns)
        fair = list(line)[:head]
        while turns:
            used, order, key = heapq.heappop(turns)
            mine = keys[key]
            seq = mine.popleft()
            fair.append(seq)
            used += 1 / seq.weight
            while mine and mine[0].job is seq.job:  # a job's choices together: one prefill
                fair.append(mine.popleft())
                used += 1 / seq.weight
            if mine:
                heapq.heappush(turns, (used, order, key))
        self.interactive = deque(fair)

    def bulk_room(self, rows: list[Any]) -> int:
        """How many more bulk sequences the engine would run now."""
        if any(s.finish_reason is None for s in self.interactive):
            return 0
        running: int = sum(s.bulk for s in _live(rows))
        limit = min(self.bulk_limit(rows), self.max_batch_size - (len(rows) - running))
        return max(0, limit - running - len(_live(self.bulk)))
