"""How waiting sequences become running rows: admission within the step's token budget (a
long prompt alone, a chunk per step), prefix reuse, the prefill pass, and joining the batch with
a first token. A part of :class:`~workers.engine.generation.GenerationEngine`, kept apart so
that the engine's module holds its loop and its public face."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import torch

from workers.engine.batch import BatchState
from workers.engine.errors import EngineFailed
from workers.engine.isolation import run_isolated
from workers.engine.output import TokenOutput
from workers.engine.prefill import Piece, PrefillBudget, prefill_forward, row_kv
from workers.engine.prefix import BLOCK, PrefixCache
from workers.engine.running import RunningRows
from workers.engine.scheduler import Scheduler
from workers.engine.sequences import Sequence

log = logging.getLogger(__name__)


class Admission:
    """The engine's admission and prefill steps (a mixin: the engine holds the state, and its
    ``_fail`` ends the jobs whose prefill failed)."""

    model: Any
    adapters: dict[str, str]
    name: str
    pad_id: int
    max_batch_size: int
    parts: bool  # the model's layers allow prefix reuse and chunks
    prefix: PrefixCache
    output: TokenOutput
    _lock: threading.Condition
    _scheduler: Scheduler
    _budget: PrefillBudget
    _chunk: int
    _rows: list[Sequence]
    _running: RunningRows

    def _admit(self) -> list[Sequence]:
        """The sequences prefilled this step, after bulk rows above their share give way to
        waiting interactive ones (see :mod:`workers.engine.scheduler`): as many as the step's
        token budget allows, or one long prompt alone, whose next chunk fills the budget."""
        budget = self._budget.tokens(streams_running=bool(self._rows))

        def cost(seq: Sequence) -> tuple[int, bool]:
            self._reuse_prefix(seq)
            return seq.to_prefill, seq.part is not None or seq.to_prefill > budget

        with self._lock:
            evicted = self._scheduler.preempt(self._rows)
            if evicted:
                self._evict(evicted)
            joining = self._scheduler.take(self._rows, budget, cost)
        self._chunk = budget
        return joining

    def _reuse_prefix(self, seq: Sequence) -> None:
        """Give ``seq`` the longest prefix of its context the prefix cache holds (once)."""
        if seq.looked_up:
            return
        seq.looked_up = True
        if not self.prefix.enabled or seq.wants_prompt_logprobs:
            return  # the prompt's logprobs need every position's logits
        seq.cached, seq.prefix = self.prefix.lookup(seq.context(), seq.adapter)

    def _evict(self, indices: list[int]) -> None:
        """Drop rows from the batch (their cache goes) and put them back in line to resume."""
        rows = self._rows
        seqs = [rows[i] for i in indices]
        self._running.remove(seqs)
        for seq in seqs:
            seq.resumed = seq.prompt + seq.generated
            seq.part, seq.prefix, seq.cached, seq.looked_up = None, None, 0, False
        self._scheduler.requeue(seqs)
        log.info("engine %s: %d bulk rows give way to interactive ones", self.name, len(seqs))

    def _prefill(self, joining: list[Sequence], events: list[dict[str, Any]]) -> None:
        """Prefill ``joining`` in one forward pass (a long prompt alone: its next chunk) and join
        the prompts it completes to the running batch. If the pass fails, each job's prompts are
        prefilled alone, so only a job that fails alone fails."""
        by_job: dict[int, list[Sequence]] = {}
        for seq in joining:
            by_job.setdefault(id(seq.job), []).append(seq)

        def run(jobs: list[list[Sequence]]) -> tuple[Any, BatchState, list[Sequence], list[int]]:
            return self._prefill_forward([seq for seqs in jobs for seq in seqs])

        for jobs, result, error in run_isolated(list(by_job.values()), run):
            seqs = [seq for group in jobs for seq in group]
            if error is None:
                self._prefilled(seqs, *result, events)
                continue
            log.error("engine %s: a prefill failed", self.name, exc_info=error)
            failure = EngineFailed("The model failed on this request's prompt.")
            for seq in seqs:
                seq.part = seq.prefix = None
            self._fail({id(s.job): s.job for s in seqs}.values(), failure, events)

    def _prefill_forward(
        self, joining: list[Sequence]
    ) -> tuple[Any, BatchState, list[Sequence], list[int]]:
        """One forward pass over the distinct contexts of ``joining`` (n choices of a prompt
        share one); changes nothing of the engine's state but a lone prompt's chunks. Returns
        the model's output, the pass's rows, the sequence behind each row, and each sequence's
        row."""
        unique: dict[int, int] = {}  # id(context) -> its row in the pass
        firsts: list[Sequence] = []
        for seq in joining:
            if id(seq.context()) not in unique:  # a context is shared only by one job's choices
                unique[id(seq.context())] = len(firsts)
                firsts.append(seq)
        rows = [unique[id(seq.context())] for seq in joining]
        # A prompt prefilled alone may be cut in chunks, one per step, within the step's budget.
        lone = len(joining) == 1 and self.parts and not joining[0].wants_prompt_logprobs
        pieces = []
        for seq in firsts:
            context = seq.context()
            end = min(len(context), seq.prefilled + self._chunk) if lone else len(context)
            pieces.append(Piece(seq.part, context[seq.prefilled : end], seq.prefix or []))
        keep_all = any(seq.wants_prompt_logprobs for seq in firsts)
        started = time.perf_counter()
        extra = self._adapter_names(firsts)
        # Rows that start the running batch get room for a full batch beside them.
        room = 0 if self._rows else self.max_batch_size
        out, state = prefill_forward(self.model, pieces, self.pad_id, keep_all, extra, room)
        self._budget.prefilled(sum(len(p.tokens) for p in pieces), time.perf_counter() - started)
        return out, state, firsts, rows

    def _prefilled(
        self,
        joining: list[Sequence],
        out: Any,
        state: BatchState,
        firsts: list[Sequence],
        rows: list[int],
        events: list[dict[str, Any]],
    ) -> None:
        """After a prefill pass: a chunked prompt not done yet keeps its cache and waits first in
        its line; the others' prompts go to the prefix cache and they join the batch."""
        seq = joining[0]
        if len(joining) == 1 and state.mask.shape[1] < len(seq.context()):
            seq.part, seq.prefix = state, None
            self._keep_prefix(seq, state, 0, state.mask.shape[1])
            with self._lock:
                self._scheduler.resume_first(seq)
            return
        for row, first in enumerate(firsts):
            if first.resumed is None:
                first.job.cached_tokens += first.cached
                self._keep_prefix(first, state, row, len(first.context()))
        for seq in joining:
            seq.part = seq.prefix = None
        if len(firsts) < len(joining):
            state.select(rows)  # one row per choice: copies of a shared prompt's row
        self._join(joining, out, state, rows, events)

    def _keep_prefix(self, seq: Sequence, state: BatchState, row: int, end: int) -> None:
        """Put the whole blocks of ``seq``'s prompt before token ``end`` that the prefix cache
        lacks (after those it reused, and those kept before) in the prefix cache. A long prompt
        keeps its blocks chunk by chunk, so that no step copies its whole cache at once."""
        start = max(seq.cached, seq.kept)  # both whole blocks
        if not self.prefix.enabled or seq.resumed is not None or end // BLOCK <= start // BLOCK:
            return
        end = end // BLOCK * BLOCK
        self.prefix.store(
            seq.context()[:end], seq.adapter, row_kv(state, row, start, end), start // BLOCK
        )
        seq.kept = end

    def _join(
        self,
        joining: list[Sequence],
        out: Any,
        joined: BatchState,
        rows: list[int],
        events: list[dict[str, Any]],
    ) -> None:
        """Add prefilled sequences to the running batch and choose their first tokens."""
        now = time.monotonic()
        for seq, row in zip(joining, rows, strict=True):
            if seq.job.started is None:
                seq.job.started = now
            if seq.wants_prompt_logprobs:
                seq.echo["logprobs"] = self.output.prompt_logprobs(seq, out.logits[row])
        group = self._running.join(joining, joined, self.max_batch_size)
        first_row = len(group.rows) - len(joining)
        last = out.logits[:, -1, :].index_select(0, torch.tensor(rows, device=out.logits.device))
        try:
            group.batch.last_tokens[first_row:] = self.output.advance(joining, last, events)
        except Exception:  # noqa: BLE001 - the sampler failed on these rows: they leave
            log.exception("engine %s: choosing first tokens failed", self.name)
            failure = EngineFailed("The model failed on this request's prompt.")
            self._fail({id(s.job): s.job for s in joining}.values(), failure, events)

    def _adapter_names(self, rows: list[Sequence]) -> dict[str, Any]:
        """The forward pass's per-row adapters, for a PEFT model (nothing for a plain one)."""
        return {"adapter_names": [s.adapter for s in rows]} if self.adapters else {}
