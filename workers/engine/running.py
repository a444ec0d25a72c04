"""The running rows, in decode groups: each group one left-padded batch, one forward pass a step.

One batch for every row pads each row to the longest: a 6,000-token prompt joining four short
streams would make every decode step read (and the join write) 6,000 columns for all five rows,
several times the work of the streams alone. So rows join the group whose padding, with them in
it, costs less than a forward pass (``fixed``: a pass's cost in row-columns, the model's weight
bytes over a token's keys-and-values bytes), and start a group of their own otherwise; groups
merge again once one batch holds less than half a pass's worth of padding. A step decodes group
by group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.engine.batch import BatchState
from workers.engine.kvcache import kv_bytes_per_token
from workers.engine.sequences import Sequence

MAX_GROUPS = 4  # more passes per step than this cost more than any padding saves


@dataclass
class Group:
    rows: list[Sequence]
    batch: BatchState

    @property
    def columns(self) -> int:
        return self.batch.mask.shape[1]


class RunningRows:
    """Every running row, and the groups that decode them."""

    def __init__(self, fixed: float) -> None:
        self.fixed = fixed  # a forward pass's cost, in row-columns of attention
        self.groups: list[Group] = []

    @property
    def rows(self) -> list[Sequence]:
        """Every running row, group after group (a new list)."""
        return [seq for group in self.groups for seq in group.rows]

    def __len__(self) -> int:
        return sum(len(group.rows) for group in self.groups)

    def join(self, seqs: list[Sequence], state: BatchState, row_capacity: int) -> Group:
        """Add ``seqs`` (the rows of ``state``, prefilled) to the group they cost least in, or
        to a new one; returns that group (they are its last rows)."""
        best = min(self.groups, key=lambda group: _padding(group, state), default=None)
        if best is not None and (
            _padding(best, state) <= self.fixed or len(self.groups) >= MAX_GROUPS
        ):
            best.batch.extend(state, row_capacity)
            best.rows.extend(seqs)
            return best
        group = Group(list(seqs), state)
        self.groups.append(group)
        return group

    def retire(self) -> None:
        """Drop the rows that finished (or were cancelled or failed)."""
        self._keep(lambda seq: seq.finish_reason is None)

    def remove(self, seqs: list[Sequence]) -> None:
        """Drop ``seqs`` (rows that give way: their cache goes)."""
        gone = {id(seq) for seq in seqs}
        self._keep(lambda seq: id(seq) not in gone)

    def _keep(self, wanted: Callable[[Sequence], bool]) -> None:
        """Keep the rows ``wanted``; groups left empty go, and groups that would cost less as
        one batch merge."""
        for group in self.groups:
            keep = [i for i, seq in enumerate(group.rows) if wanted(seq)]
            if len(keep) < len(group.rows):
                group.rows = [group.rows[i] for i in group.batch.keep(keep)] if keep else []
        self.groups = [group for group in self.groups if group.rows]
        self._merge()  # nothing to do with one group, the usual case

    def clear(self) -> None:
        self.groups = []

    def _merge(self) -> None:
        # Half a pass's cost: merging copies both batches, so it must save more than a bit.
        while len(self.groups) > 1:
            pairs = [
                (_padding(a, b.batch), a, b)
                for a in self.groups
                for b in self.groups
                if a is not b and a.columns >= b.columns
            ]
            padding, a, b = min(pairs, key=lambda pair: pair[0])
            if padding > self.fixed / 2:
                return
            a.batch.extend(b.batch)
            a.rows.extend(b.rows)
            self.groups.remove(b)


def _padding(group: Group, state: BatchState) -> int:
    """Row-columns of padding ``group`` would hold with ``state``'s rows put in it: all of it,
    not only what they add, so that short rows joining a long one one at a time stop once
    together they would cost more than a pass of their own."""
    rows, theirs = len(group.rows), state.rows
    width = max(group.columns, state.mask.shape[1])
    return (rows + theirs) * width - int(group.batch.mask.sum()) - int(state.mask.sum())


def pass_cost(model: Any) -> float:
    """A forward pass's fixed cost in row-columns of attention: the bytes of the model's
    weights (each pass reads them all) over the bytes of one token's keys and values (what
    attention reads per row and column)."""
    params = list(model.parameters())
    weights: int = sum(p.numel() * p.element_size() for p in params)
    return weights / kv_bytes_per_token(model.config, params[0].dtype)
