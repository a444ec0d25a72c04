"""The batched generation engine: every running sequence advances a token per step, in batches.

Each step (1) admits waiting sequences, up to a token budget, (2) advances every running row by
one token, in one decode pass per group of rows of like lengths (see
:mod:`workers.engine.running`; a row alone in its group may take several, from a draft its pass
checks, see :mod:`workers.engine.speculation`), (3) prefills the admitted ones (a long prompt a
chunk per step, see :mod:`workers.engine.prefill`; a prompt's start from the prefix cache when
it has been seen, see :mod:`workers.engine.prefix`) and joins the finished ones to the batch
with their first token, (4) hands the step's events and the ids of in-flight jobs to the
:class:`JobIO` in one call, learning which were cancelled, and (5) drops the rows that finished
or were cancelled. New work joins between steps; nothing waits for a batch to drain, and no
stream waits for a whole long prefill. Embedding jobs for the model (see
:mod:`workers.engine.pooling`) take a step of their own.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from config.events import Event, Tokenized
from config.grammars import TOOL_FORMATS
from config.protocol import (
    CANCELLED,
    CHAT,
    COMPLETION,
    EMBEDDING,
    ERROR,
    WORKER_SHUTDOWN,
    Job,
)
from config.status import EngineLoad
from workers.engine.admission import Admission
from workers.engine.base import EngineLoop
from workers.engine.constraints import load_constraints
from workers.engine.decoder import decoder_for
from workers.engine.embedding import EmbeddingJob, take_batch
from workers.engine.errors import EngineFailed, JobFailed
from workers.engine.intake import chat_tokens, context_length, eos_ids, generation_job
from workers.engine.io import JobIO, Ticket, exchange_patiently
from workers.engine.kvcache import growing, new_cache
from workers.engine.lora import AdapterServing, is_peft
from workers.engine.output import TokenOutput
from workers.engine.pooling import embed_isolated, embedding_job
from workers.engine.prefill import PrefillBudget
from workers.engine.prefix import PrefixCache
from workers.engine.reasoning import reasoning_tags
from workers.engine.running import RunningRows, pass_cost
from workers.engine.scheduler import Scheduler
from workers.engine.sequences import JobState, Sequence, adapter_names
from workers.engine.speculation import draft_for, speculate
from workers.engine.tokens import tokenized
from workers.engine.tools import template_renders_tools

log = logging.getLogger(__name__)


class GenerationEngine(EngineLoop[None], AdapterServing):
    """Owns one causal LM and the thread that runs its batch.

    With ``adapters`` (public model name -> adapter name), the model is a PEFT model holding
    several LoRA adapters on one copy of the base weights: a job for an adapter's model name runs
    through that adapter, one for the model's own name through the base, all of them in the same
    batch (PEFT's mixed-adapter forward: one adapter name per row). Adapters come and go while it
    serves (:class:`~workers.engine.lora.AdapterServing`).
    """

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
        reasoning_format: str = "none",
        bulk_share: float = 0.25,
        prefix_cache_bytes: int = 0,
        lookup_tokens: int = 0,
    ) -> None:
        super().__init__(name)
        self.model = model
        # decode steps run a leaner forward where one computes the same (a Llama on the CPU)
        self.decode_forward = decoder_for(model) or model
        self.adapters = adapters or {}  # public model name -> its adapter's name in the model
        self.peft = is_peft(model)  # its rows name their adapters (see workers/engine/lora.py)
        self.tokenizer = tokenizer
        self.io = io
        self.max_batch_size = max_batch_size
        self.prefill_tokens = prefill_tokens
        self.lookup_tokens = lookup_tokens  # draft size of prompt-lookup speculation (0: off)
        self.drafted = self.accepted = 0  # draft tokens proposed, and taken
        self.embedding_batch_size = embedding_batch_size
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
        self.reasoning = reasoning_tags(reasoning_format, tokenizer, name)
        self.constraints = load_constraints(tokenizer, self.vocab_size, self.eos_ids, name)
        self.output = TokenOutput(tokenizer, self.constraints, self.eos_ids, self.pad_id, name)
        # Reused prefixes and chunked prefill need full-attention layers that grow in place.
        self.parts = growing(new_cache(model.config))
        self.prefix = PrefixCache(prefix_cache_bytes if self.parts else 0)
        self._budget = PrefillBudget(prefill_tokens)
        self._scheduler = Scheduler(max_batch_size, bulk_share)
        self._embeddings: deque[EmbeddingJob] = deque()
        self._embedding_now: list[EmbeddingJob] = []  # taken by the step under way
        self._running = RunningRows(pass_cost(model))
        self._aborting: str | None = None
        self.admission = Admission(
            model,
            self.output,
            self._scheduler,
            self._running,
            self.prefix,
            self._budget,
            self._lock,
            self._fail,
            parts=self.parts,
            adapters=self.peft,
            pad_id=self.pad_id,
            name=name,
        )

    # -- the outside: submit jobs, start and stop the loop -------------------------------------

    def submit(self, job: Job) -> Ticket:
        """Check and tokenize ``job``, queue its sequences; raise :class:`JobFailed` (an
        :class:`InvalidRequest` when the request's content is at fault)."""
        if job.get("kind") not in (None, CHAT, COMPLETION, EMBEDDING):  # None: a test's job
            raise JobFailed(f"The model {self.name} does not score text pairs.")
        if job.get("kind") == EMBEDDING:
            embedding = embedding_job(job, self)
            with self._lock:
                self._check_adapter(embedding.adapter, job)
                self._embeddings.append(embedding)
                self._wake()
            return embedding.ticket
        state = generation_job(job, self)
        with self._lock:
            self._check_adapter(state.sequences[0].adapter, job)
            self._scheduler.add(state.sequences)
            self._wake()
        return state.ticket

    def tokenize(self, job: Job) -> Tokenized:
        """A (de)tokenize job's answer; a chat's messages as a chat request's prompt."""
        chat = functools.partial(chat_tokens, model=self)
        return tokenized(job, self.tokenizer, self.vocab_size, self.context_length, chat)

    def abort(self, message: str) -> None:
        """End every job in flight with an error (a shutdown that cannot wait any longer)."""
        with self._lock:
            self._aborting = message
            self._wake()

    def slots(self) -> int:
        return self.max_batch_size

    def load(self) -> EngineLoad:
        """How busy the engine is: running rows, sequences waiting to join, and how long the
        step under way has run (the worker's watchdog reads it, see :meth:`stalled`)."""
        return {
            "running": len(self._rows),
            "waiting": len(self._scheduler.waiting()),
            "embedding": len(self._embeddings) + len(self._embedding_now),
            "step_seconds": round(self.step_seconds(), 3),
        }

    @property
    def _rows(self) -> list[Sequence]:
        """Every running row (a new list; see :class:`RunningRows` for their groups)."""
        return self._running.rows

    # -- the loop ------------------------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(
            self._scheduler.interactive
            or self._scheduler.bulk
            or self._rows
            or self._embeddings
            or self._aborting
        )

    def _take(self) -> None:
        return None  # a step takes its work itself, from the line, as its budget allows

    def _run_step(self, work: None) -> None:
        if self._aborting:  # between steps, on the engine thread that owns the batch
            self._fail_all(WORKER_SHUTDOWN, self._aborting)
            self._aborting = None
            return
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
        with self._timed_step():
            self._step()

    def _step(self) -> None:
        events: list[Event] = []
        self._embedding_now = self._take_embeddings()
        if self._embedding_now:
            embed_isolated(
                self.model, self._embedding_now, self.pad_id, self.embedding_batch_size,
                self.peft, self.output.ending, events, self.name,
            )  # fmt: skip
        else:
            joining = self.admission.admit()
            # The running rows advance first; then the admitted prompts are prefilled (within
            # the step's budget, so the streams' next step is never far off) and join them.
            if self._running.groups:
                self._decode(events)
            if joining:
                self.admission.prefill(joining, events)
        cancelled = exchange_patiently(self.io, events, self._job_ids(), self._still_waiting)
        # Only now, with its terminal event published, may a job count as finished: the Celery
        # task acknowledges the message when its ticket finishes.
        for job, outcome in self.output.ending:
            job.ticket.finish(outcome, job.served)
        self.output.ending.clear()
        self._embedding_now = []
        if cancelled:
            self._cancel(cancelled)
        self._running.retire()

    def _decode(self, events: list[Event]) -> None:
        """One decode pass per group of running rows (see :mod:`workers.engine.running`)."""
        started = time.perf_counter()
        for group in self._running.groups:
            rows = group.rows
            try:
                draft = draft_for(rows, self.lookup_tokens if self.parts else 0)
                if draft:
                    extra = adapter_names(rows, self.peft)
                    taken = speculate(
                        self.decode_forward, self.output, group.batch, rows[0], draft, extra, events
                    )
                    self.drafted, self.accepted = self.drafted + len(draft), self.accepted + taken
                    continue
                inputs = group.batch.decode_inputs() | adapter_names(rows, self.peft)
                out = self.decode_forward(**inputs, use_cache=True)
                group.batch.last_tokens = self.output.advance(rows, out.logits[:, -1, :], events)
            except Exception:  # noqa: BLE001 - the cache may be half-updated: end the group's rows
                log.exception("engine %s: a decode step failed; failing its rows", self.name)
                failure = EngineFailed("The model failed while generating this response.")
                self._fail({id(s.job): s.job for s in rows}.values(), failure, events)
        self._budget.decoded(time.perf_counter() - started)

    def _fail(self, jobs: Iterable[JobState], error: JobFailed, events: list[Event]) -> None:
        """End ``jobs`` with ``error`` (those whose ``done`` is already out are left alone)."""
        for job in jobs:
            self.output.fail(job, error, events)
        with self._lock:  # choices of a failed job that had not joined yet never will
            self._scheduler.drop_finished()

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

    def _job_ids(self) -> list[str]:
        with self._lock:
            seqs = self._rows + self._scheduler.waiting()
        return list(dict.fromkeys(s.job.id for s in seqs if s.finish_reason is None))

    def _cancel(self, job_ids: set[str]) -> None:
        events: list[Event] = []
        jobs: dict[str, JobState] = {}
        with self._lock:
            for seq in self._rows + self._scheduler.waiting():
                if seq.job.id in job_ids and seq.finish_reason is None:
                    seq.finish_reason = CANCELLED
                    jobs[seq.job.id] = seq.job
            self._scheduler.drop_finished()
        for job in jobs.values():
            # Still exactly one terminal event, so the job is recorded as ended (and how).
            events.append(job.events.error(CANCELLED, "Request cancelled."))
        if events:
            exchange_patiently(self.io, events, [], self._still_waiting)
            log.info("engine %s: cancelled %s", self.name, ", ".join(sorted(jobs)))
        for job in jobs.values():
            job.ticket.finish(CANCELLED, job.served)

    def _fail_all(self, code: str, message: str) -> None:
        """End every job the engine holds with one error (a shutdown, or a failure outside the
        model); the batch starts afresh."""
        events: list[Event] = []
        with self._lock:
            seqs = self._rows + self._scheduler.waiting()
            embeddings = self._embedding_now + list(self._embeddings)
            self._running.clear()
            self._scheduler.interactive.clear()
            self._scheduler.bulk.clear()
            self._embedding_now, self._embeddings = [], deque()
        jobs: list[JobState | EmbeddingJob] = [
            j for j in {id(s.job): s.job for s in seqs}.values() if not j.ticket.finished
        ]
        jobs += [j for j in embeddings if not j.ticket.finished]
        for job in jobs:
            events.append(job.events.error(code, message))
        try:
            self.io.exchange(events, [])
        except Exception:  # noqa: BLE001
            log.exception("engine %s: could not publish the failure", self.name)
        for job in jobs:
            job.ticket.finish(ERROR, job.served)
