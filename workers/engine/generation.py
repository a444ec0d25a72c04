"""The batched generation engine: every running sequence advances in one forward pass per step.

Each step (1) admits waiting sequences, up to a token budget, (2) runs one decode pass for every
running row, (3) prefills the admitted ones (a long prompt a chunk per step, see
:mod:`workers.engine.prefill`; a prompt's start from the prefix cache when it has been seen, see
:mod:`workers.engine.prefix`) and joins the finished ones to the batch with their first token,
(4) hands the step's events and the ids of in-flight jobs to the :class:`JobIO` in one call,
learning which were cancelled, and (5) drops the rows that finished or were cancelled. New work
joins between steps; nothing waits for a batch to drain, and no stream waits for a whole long
prefill. Embedding jobs for the model (see :mod:`workers.engine.pooling`) take a step of their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from config.grammars import TOOL_FORMATS
from config.protocol import CANCELLED, DONE, ERROR, WORKER_SHUTDOWN
from workers.engine.batch import BatchState
from workers.engine.constraints import load_constraints
from workers.engine.errors import EngineFailed, JobFailed
from workers.engine.intake import context_length, eos_ids, generation_job
from workers.engine.io import JobIO, Ticket, exchange_patiently
from workers.engine.isolation import run_isolated
from workers.engine.kvcache import growing, kv_bytes_per_token, new_cache
from workers.engine.output import TokenOutput
from workers.engine.pooling import EmbeddingJob, embed, embedding_job, take_batch
from workers.engine.prefill import Piece, PrefillBudget, prefill_forward, row_kv
from workers.engine.prefix import BLOCK, PrefixCache
from workers.engine.scheduler import Scheduler
from workers.engine.sequences import Job, Sequence
from workers.engine.tools import template_renders_tools

log = logging.getLogger(__name__)


class GenerationEngine:
    """Owns one causal LM and the thread that runs its batch.

    With ``adapters`` (public model name -> adapter name), the model is a PEFT model holding
    several LoRA adapters on one copy of the base weights: a job for an adapter's model name runs
    through that adapter, any other through the base, all of them in the same batch (PEFT's
    mixed-adapter forward: one adapter name per row).
    """

    info: dict[str, str] = {}  # what the heartbeat tells of it (device, dtype), set by loading

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        io: JobIO,
        max_batch_size: int = 32,
        name: str = "model",
        prefill_tokens: int = 512,
        adapters: dict[str, str] | None = None,
        embedding_batch_size: int = 64,
        tool_format: str = "hermes",
        tool_prompt: str = "auto",
        bulk_share: float = 0.25,
        prefix_cache_bytes: int = 0,
    ) -> None:
        self.model = model
        self.adapters = adapters or {}
        self.tokenizer = tokenizer
        self.io = io
        self.max_batch_size = max_batch_size
        self.prefill_tokens = prefill_tokens
        self.embedding_batch_size = embedding_batch_size
        self.name = name
        self.device = next(model.parameters()).device
        if self.device.type == "cpu":
            # transformers copies keys and values once per query head before a masked attention
            # (a prefill) unless told that torch's SDPA groups them itself, which it does on
            # CPU: the same results, and a prefill over a long cached prefix 4x faster.
            os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        self.context_length = context_length(model, tokenizer)
        self.vocab_size = model.config.vocab_size
        self.eos_ids = eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.tool_format = TOOL_FORMATS[tool_format]
        # The format's own prompt for tools, unless the model's template writes them itself.
        builtin = tool_prompt == "builtin" or (
            tool_prompt == "auto" and not template_renders_tools(tokenizer)
        )
        self.tool_prompt = self.tool_format if builtin else None
        self.constraints = load_constraints(tokenizer, self.vocab_size, self.eos_ids, name)
        self.output = TokenOutput(tokenizer, self.constraints, self.eos_ids, self.pad_id, name)
        # Reused prefixes and chunked prefill need full-attention layers that grow in place.
        self.parts = growing(new_cache(model.config))
        self.prefix = PrefixCache(prefix_cache_bytes if self.parts else 0)
        dtype = next(model.parameters()).dtype
        self.kv_bytes_per_token = kv_bytes_per_token(model.config, dtype)
        self._budget = PrefillBudget(prefill_tokens)
        self._lock = threading.Condition()
        self._scheduler = Scheduler(max_batch_size, bulk_share)
        self._embeddings: deque[EmbeddingJob] = deque()
        self._embedding_now: list[EmbeddingJob] = []  # taken by the step under way
        self._rows: list[Sequence] = []
        self._batch: BatchState | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._aborting: str | None = None
        self._step_started: float | None = None  # monotonic time the step under way began
        self._chunk = prefill_tokens  # tokens a lone long prompt prefills this step

    # -- the outside: submit jobs, start and stop the loop -------------------------------------

    def submit(self, job: dict[str, Any]) -> Ticket:
        """Check and tokenize ``job``, queue its sequences; raise :class:`JobFailed` (an
        :class:`InvalidRequest` when the request's content is at fault)."""
        if job.get("kind") == "embedding":
            state = embedding_job(job, self)
            with self._lock:
                self._embeddings.append(state)
                self._lock.notify()
            return state.ticket
        state = generation_job(job, self)
        with self._lock:
            self._scheduler.add(state.sequences)
            self._lock.notify()
        return state.ticket

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread:
            self._thread.join(timeout=30)

    def abort(self, message: str) -> None:
        """End every job in flight with an error (a shutdown that cannot wait any longer)."""
        with self._lock:
            self._aborting = message
            self._lock.notify()

    def load(self) -> dict[str, Any]:
        """How busy the engine is: running rows, sequences waiting to join, and how long the
        step under way has run (the worker's watchdog reads it, see :meth:`stalled`)."""
        return {
            "running": len(self._rows),
            "waiting": len(self._scheduler.waiting()),
            "embedding": len(self._embeddings) + len(self._embedding_now),
            "step_seconds": round(self.step_seconds(), 3),
        }

    def step_seconds(self) -> float:
        """Seconds the step under way has run; 0 between steps."""
        started = self._step_started
        return 0.0 if started is None else time.monotonic() - started

    def stalled(self, timeout: float) -> bool:
        """Whether one step has run for ``timeout`` seconds (a hung kernel, a deadlock), or the
        engine's thread is gone while it has work."""
        if self.step_seconds() >= timeout:
            return True
        dead = self._thread is not None and not self._thread.is_alive() and not self._stopping
        return dead and bool(self._rows or self._scheduler.waiting() or self._embeddings)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (
                    self._scheduler.interactive
                    or self._scheduler.bulk
                    or self._rows
                    or self._embeddings
                    or self._stopping
                    or self._aborting
                ):
                    self._lock.wait()
                if self._stopping:
                    return
            if self._aborting:  # between steps, on the engine thread that owns the batch
                self._fail_all(WORKER_SHUTDOWN, self._aborting)
                self._aborting = None
                continue
            try:
                self.step()
            except Exception:  # noqa: BLE001 - one bad step must not kill the worker
                log.exception("engine %s: step failed; failing every job in it", self.name)
                self._fail_all(EngineFailed.code, "The model worker failed while generating.")

    @torch.inference_mode()
    def step(self) -> None:
        """Run one engine step (admit, decode, publish, retire). Public for tests.

        A failure in the model or the sampler fails only the jobs it touched: a prompt whose
        prefill fails ends its own job (the others prefilled with it are run again without it);
        a failed decode ends the running rows. The engine goes on with the rest.
        """
        self._step_started = time.monotonic()
        try:
            self._step()
        finally:
            self._step_started = None

    def _step(self) -> None:
        events: list[dict[str, Any]] = []
        self._embedding_now = self._take_embeddings()
        if self._embedding_now:
            self._embed(self._embedding_now, events)
        else:
            joining = self._admit()
            # The running rows advance first; then the admitted prompts are prefilled (within
            # the step's budget, so the streams' next step is never far off) and join them.
            if self._rows:
                self._decode(events)
            if joining:
                self._prefill(joining, events)
        cancelled = exchange_patiently(self.io, events, self._job_ids(), self._still_waiting)
        # Only now, with its terminal event published, may a job count as finished: the Celery
        # task acknowledges the message when its ticket finishes.
        for job, outcome in self.output.ending:
            job.ticket.finish(outcome)
        self.output.ending.clear()
        self._embedding_now = []
        if cancelled:
            self._cancel(cancelled)
        self._retire()

    def _still_waiting(self) -> bool:
        """While events wait for Redis, the step is not stuck: its clock starts again."""
        self._step_started = time.monotonic()
        return not self._stopping

    def _decode(self, events: list[dict[str, Any]]) -> None:
        rows, started = self._rows, time.perf_counter()
        try:
            inputs = self._batch.decode_inputs() | self._adapter_names(rows)
            out = self.model(**inputs, use_cache=True)
            self._batch.last_tokens = self.output.advance(rows, out.logits[:, -1, :], events)
        except Exception:  # noqa: BLE001 - the cache may be half-updated: end every running row
            log.exception("engine %s: a decode step failed; failing its rows", self.name)
            failure = EngineFailed("The model failed while generating this response.")
            self._fail({id(s.job): s.job for s in rows}.values(), failure, events)
        self._budget.decoded(time.perf_counter() - started)

    def _fail(self, jobs: Iterable[Job], error: JobFailed, events: list[dict[str, Any]]) -> None:
        """End ``jobs`` with ``error`` (those whose ``done`` is already out are left alone)."""
        for job in jobs:
            if job.finished:
                continue
            for seq in job.sequences:
                if seq.finish_reason is None:
                    seq.finish_reason = "error"  # leaves the batch (or the waiting line)
            events.append(job.events.error(error.code, error.message, error.param))
            self.output.ending.append((job, ERROR))
        with self._lock:  # choices of a failed job that had not joined yet never will
            self._scheduler.drop_finished()

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
        gone = set(indices)
        seqs = [self._rows[i] for i in indices]
        keep = [i for i in range(len(self._rows)) if i not in gone]
        if keep:
            self._rows = [self._rows[i] for i in self._batch.keep(keep)]
        else:
            self._rows, self._batch = [], None
        for seq in seqs:
            seq.resumed = seq.prompt + seq.generated
            seq.part, seq.prefix, seq.cached, seq.looked_up = None, None, 0, False
        self._scheduler.requeue(seqs)
        log.info("engine %s: %d bulk rows give way to interactive ones", self.name, len(seqs))

    def bulk_room(self) -> int:
        """How many more bulk sequences the engine would take now (0 while interactive ones
        wait): what a worker's bulk feeder asks before it takes a batch line."""
        with self._lock:
            return self._scheduler.bulk_room(self._rows)

    def _take_embeddings(self) -> list[EmbeddingJob]:
        if not self._embeddings:  # the common case: no lock taken on the step's path
            return []
        with self._lock:
            return take_batch(self._embeddings, self.embedding_batch_size)

    def _embed(self, jobs: list[EmbeddingJob], events: list[dict[str, Any]]) -> None:
        """Embed every input of ``jobs`` in shared forward passes; each job ends this step."""
        size, adapters, started = self.embedding_batch_size, bool(self.adapters), time.monotonic()

        def run(group: list[EmbeddingJob]) -> list[dict[str, Any]]:
            return embed(self.model, group, self.pad_id, size, adapters, started)

        for group, done, error in run_isolated(jobs, run):
            if error is None:
                events.extend(done)
                self.output.ending.extend((job, DONE) for job in group)
                continue
            log.error("engine %s: embedding failed", self.name, exc_info=error)
            failure = EngineFailed("The model failed while embedding this input.")
            for job in group:
                events.append(job.events.error(failure.code, failure.message, failure.param))
                self.output.ending.append((job, ERROR))

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
            with self._lock:
                self._scheduler.resume_first(seq)
            return
        for row, first in enumerate(firsts):
            if first.resumed is None:
                first.job.cached_tokens += first.cached
                context = first.context()
                if self.prefix.enabled and len(context) // BLOCK > first.cached // BLOCK:
                    new = row_kv(state, row, first.cached)  # the blocks after those it reused
                    self.prefix.store(context, first.adapter, new, first.cached // BLOCK)
        for seq in joining:
            seq.part = seq.prefix = None
        if len(firsts) < len(joining):
            state.select(rows)  # one row per choice: copies of a shared prompt's row
        self._join(joining, out, state, rows, events)

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
        if self._batch is None or not self._rows:
            self._batch = joined
            self._rows = []
        else:
            self._batch.extend(joined, self.max_batch_size)
        self._rows.extend(joining)
        first_row = len(self._rows) - len(joining)
        last = out.logits[:, -1, :].index_select(0, torch.tensor(rows, device=out.logits.device))
        try:
            self._batch.last_tokens[first_row:] = self.output.advance(joining, last, events)
        except Exception:  # noqa: BLE001 - the sampler failed on these rows: they leave
            log.exception("engine %s: choosing first tokens failed", self.name)
            failure = EngineFailed("The model failed on this request's prompt.")
            self._fail({id(s.job): s.job for s in joining}.values(), failure, events)

    def _adapter_names(self, rows: list[Sequence]) -> dict[str, Any]:
        """The forward pass's per-row adapters, for a PEFT model (nothing for a plain one)."""
        return {"adapter_names": [s.adapter for s in rows]} if self.adapters else {}

    def _job_ids(self) -> list[str]:
        with self._lock:
            seqs = self._rows + self._scheduler.waiting()
        return list(dict.fromkeys(s.job.id for s in seqs if s.finish_reason is None))

    def _cancel(self, job_ids: set[str]) -> None:
        events, jobs = [], {}
        with self._lock:
            for seq in self._rows + self._scheduler.waiting():
                if seq.job.id in job_ids and seq.finish_reason is None:
                    seq.finish_reason = "cancelled"
                    jobs[seq.job.id] = seq.job
            self._scheduler.drop_finished()
        for job in jobs.values():
            # Still exactly one terminal event, so the job is recorded as ended (and how).
            events.append(job.events.error(CANCELLED, "Request cancelled."))
        if events:
            exchange_patiently(self.io, events, [], self._still_waiting)
            log.info("engine %s: cancelled %s", self.name, ", ".join(sorted(jobs)))
        for job in jobs.values():
            job.ticket.finish(CANCELLED)

    def _retire(self) -> None:
        keep = [i for i, s in enumerate(self._rows) if s.finish_reason is None]
        if len(keep) == len(self._rows):
            return
        if keep:
            self._rows = [self._rows[i] for i in self._batch.keep(keep)]
        else:
            self._rows, self._batch = [], None

    def _fail_all(self, code: str, message: str) -> None:
        """End every job the engine holds with one error (a shutdown, or a failure outside the
        model); the batch starts afresh."""
        events = []
        with self._lock:
            seqs = self._rows + self._scheduler.waiting()
            embeddings = self._embedding_now + list(self._embeddings)
            self._rows, self._batch = [], None
            self._scheduler.interactive.clear()
            self._scheduler.bulk.clear()
            self._embedding_now, self._embeddings = [], deque()
        jobs = [j for j in {id(s.job): s.job for s in seqs}.values() if not j.ticket.finished]
        jobs += [j for j in embeddings if not j.ticket.finished]
        for job in jobs:
            events.append(job.events.error(code, message))
        try:
            self.io.exchange(events, [])
        except Exception:  # noqa: BLE001
            log.exception("engine %s: could not publish the failure", self.name)
        for job in jobs:
            job.ticket.finish(ERROR)
