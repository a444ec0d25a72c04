"""How waiting sequences become running rows: admission within the step's token budget (a
long prompt alone, a chunk per step), prefix reuse, the prefill pass, and joining the batch with
a first token. :class:`~workers.engine.generation.GenerationEngine` calls it each step."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from config.events import Event
from workers.engine.batch import BatchState
from workers.engine.errors import EngineFailed, JobFailed
from workers.engine.isolation import run_isolated
from workers.engine.output import TokenOutput
from workers.engine.prefill import Piece, PrefillBudget, prefill_forward, row_kv
from workers.engine.prefix import BLOCK, PrefixCache
from workers.engine.running import RunningRows
from workers.engine.scheduler import Scheduler
from workers.engine.sequences import JobState, Sequence, adapter_names

log = logging.getLogger(__name__)


FailJobs = Callable[[Iterable[JobState], JobFailed, list[Event]], None]


class Admission:
    """The engine's admission and prefill steps. The engine owns the state they change (its
    lock, line, running rows, prefix cache) and hands it over; ``fail`` is the engine's way to
    end the jobs whose prefill failed."""

    def __init__(
        self,
        model: Any,
        output: TokenOutput,
        scheduler: Scheduler,
        running: RunningRows,
        prefix: PrefixCache,
        budget: PrefillBudget,
        lock: threading.Condition,
        fail: FailJobs,
        *,
        parts: bool,
        adapters: bool,
        pad_id: int,
        name: str,
    ) -> None:
        self.model = model
        self.output = output
        self.scheduler = scheduler
        self.running = running
        self.prefix = prefix
        self.budget = budget
        self.lock = lock
        self.fail = fail
        self.parts = parts  # the model's layers allow prefix reuse and chunks
        self.adapters = adapters
        self.pad_id = pad_id
        self.name = name
        self.chunk = budget.most  # tokens a lone long prompt prefills this step

    def admit(self) -> list[Sequence]:
        """The sequences prefilled this step, after bulk rows above their share give way to
        waiting interactive ones (see :mod:`workers.engine.scheduler`): as many as the step's
        token budget allows, or one long prompt alone, whose next chunk fills the budget."""
        rows = self.running.rows
        budget = self.budget.tokens(streams_running=bool(rows))

        def cost(seq: Sequence) -> tuple[int, bool]:
            self._reuse_prefix(seq)
            return seq.to_prefill, seq.part is not None or seq.to_prefill > budget

        with self.lock:
            evicted = self.scheduler.preempt(rows)
            if evicted:
                self._evict(evicted)
            joining = self.scheduler.take(self.running.rows, budget, cost)  # after evictions
        self.chunk = budget
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
        rows = self.running.rows
        seqs = [rows[i] for i in indices]
        self.running.remove(seqs)
        for seq in seqs:
            seq.resumed = seq.prompt + seq.generated
            seq.part, seq.prefix, seq.cached, seq.looked_up = None, None, 0, False
        self.scheduler.requeue(seqs)
        log.info("engine %s: %d bulk rows give way to interactive ones", self.name, len(seqs))

    def prefill(self, joining: list[Sequence], events: list[Event]) -> None:
        """Prefill ``joining`` in one forward pass (a long prompt alone: its next chunk) and join
        the prompts it completes to the running batch. If the pass fails, each job's prompts are
        prefilled alone, so only a job that fails alone fails."""
        by_job: dict[int, list[Sequence]] = {}
        for seq in joining:
            by_job.setdefault(id(seq.job), []).append(seq)

        def run(jobs: list[list[Sequence]]) -> tuple[Any, BatchState, list[Sequence], list[int]]:
            return self._prefill_forward([seq for seqs in jobs for seq in seqs])

        for seq in joining:
            seq.job.ticket.mark("prefill")
        for jobs, result, error in run_isolated(list(by_job.values()), run):
            seqs = [seq for group in jobs for seq in group]
            if result is not None:
                self._prefilled(seqs, *result, events)
                continue
            log.error("engine %s: a prefill failed", self.name, exc_info=error)
            failure = EngineFailed("The model failed on this request's prompt.")
            for seq in seqs:
                seq.part = seq.prefix = None
            self.fail({id(s.job): s.job for s in seqs}.values(), failure, events)

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
            end = min(len(context), seq.prefilled + self.chunk) if lone else len(context)
            pieces.append(Piece(seq.part, context[seq.prefilled : end], seq.prefix or []))
        keep_all = any(seq.wants_prompt_logprobs for seq in firsts)
        started = time.perf_counter()
        extra = adapter_names(firsts, self.adapters)
        # Rows that start the running batch get room for a full batch beside them.
        room = 0 if self.running.rows else self.scheduler.max_batch_size
        out, state = prefill_forward(self.model, pieces, self.pad_id, keep_all, extra, room)
        self.budget.prefilled(sum(len(p.tokens) for p in pieces), time.perf_counter() - started)
        return out, state, firsts, rows

    def _prefilled(
        self,
        joining: list[Sequence],
        out: Any,
        state: BatchState,
        firsts: list[Sequence],
        rows: list[int],
        events: list[Event],
    ) -> None:
        """After a prefill pass: a chunked prompt not done yet keeps its cache and waits first in
        its line; the others' prompts go to the prefix cache and they join the batch."""
        seq = joining[0]
        if len(joining) == 1 and state.mask.shape[1] < len(seq.context()):
            seq.part, seq.prefix = state, None
            self._keep_prefix(seq, state, 0, state.mask.shape[1])
            with self.lock:
                self.scheduler.resume_first(seq)
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
        events: list[Event],
    ) -> None:
        """Add prefilled sequences to the running batch and choose their first tokens."""
        now = time.monotonic()
        for seq, row in zip(joining, rows, strict=True):
            if seq.job.started is None:
                seq.job.started = now
                seq.job.ticket.mark("first_token")
            if seq.wants_prompt_logprobs and seq.echo is not None:
                seq.echo["logprobs"] = self.output.prompt_logprobs(seq, out.logits[row])
        group = self.running.join(joining, joined, self.scheduler.max_batch_size)
        first_row = len(group.rows) - len(joining)
        last = out.logits[:, -1, :].index_select(0, torch.tensor(rows, device=out.logits.device))
        try:
            group.batch.last_tokens[first_row:] = self.output.advance(joining, last, events)
        except Exception:  # noqa: BLE001 - the sampler failed on these rows: they leave
            log.exception("engine %s: choosing first tokens failed", self.name)
            failure = EngineFailed("The model failed on this request's prompt.")
            self.fail({id(s.job): s.job for s in joining}.values(), failure, events)
