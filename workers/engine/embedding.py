"""The embedding engine: merges the inputs of concurrent jobs into shared forward passes."""

from __future__ import annotations

import base64
import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from config.events import DoneEvent, Event, EventSequence, Timing, Tokenized, Usage
from config.protocol import DONE, EMBEDDING, ERROR, Job
from config.status import EngineLoad
from workers.engine.base import EngineLoop
from workers.engine.checks import check_request_tokens, tokenize
from workers.engine.errors import EngineFailed, JobFailed
from workers.engine.io import JobIO, Ticket, exchange_patiently
from workers.engine.isolation import run_isolated
from workers.engine.sequences import BASE
from workers.engine.tokens import tokenized

log = logging.getLogger(__name__)


@dataclass
class EmbeddingJob:
    """An embedding job as an engine holds it: its inputs (texts for a sentence-transformers
    model, which tokenizes for itself; token ids for a chat model, see
    :mod:`workers.engine.pooling`), the tokens its usage reports, and the LoRA adapter (PEFT's
    name) a chat model runs them through."""

    id: str
    ticket: Ticket
    events: EventSequence
    inputs: list[str] | list[list[int]] | list[list[str]]  # texts, token ids, or text pairs
    tokens: int  # what its usage reports: the tokens the model reads (after truncation)
    adapter: str = BASE

    @property
    def served(self) -> int:
        """The tokens it cost (what its API key pays for in fair shares)."""
        return self.tokens


def take_batch(waiting: deque[EmbeddingJob], size: int) -> list[EmbeddingJob]:
    """The jobs at the front of ``waiting`` for one step: up to ``size`` inputs in all, and
    always at least one job (a larger one runs in several forward passes)."""
    taken: list[EmbeddingJob] = []
    count = 0
    while waiting and (not taken or count + len(waiting[0].inputs) <= size):
        taken.append(waiting.popleft())
        count += len(taken[-1].inputs)
    return taken


class EmbeddingEngine(EngineLoop[list[EmbeddingJob]]):
    """Owns one sentence-transformers model and the thread that encodes queued jobs together."""

    def __init__(self, model: Any, io: JobIO, batch_size: int = 64, name: str = "model") -> None:
        super().__init__(name)
        self.model = model
        self.io = io
        self.batch_size = batch_size
        self._waiting: deque[EmbeddingJob] = deque()
        self._busy = 0
        # The task and quick threads' own tokenizer: a call that sets its truncation would
        # change the one the model is using in the engine's thread (sentence-transformers sets
        # it before each batch), and two threads must not call one at once.
        self.intake = copy.deepcopy(model.tokenizer)
        self.intake_lock = threading.Lock()

    def submit(self, job: Job) -> Ticket:
        """Check and tokenize ``job``'s inputs and queue it for the next shared batch; raise
        :class:`InvalidRequest` for an input the model cannot take. Tokenizing here, in the
        task's thread, keeps a bad input from failing the batch it would have joined."""
        if job.get("kind") not in (None, EMBEDDING):  # None: a test's job
            raise JobFailed(f"The model {self.name} only embeds text.")
        tokenizer, limit = self.intake, self.model.max_seq_length
        vocab = len(tokenizer)
        texts, tokens = [], 0
        with self.intake_lock:
            for number, item in enumerate(job.get("inputs") or []):
                ids = tokenize(tokenizer, item, vocab, f"inputs[{number}]", max_length=limit)
                # Token-id inputs are decoded to text: sentence-transformers tokenizes for
                # itself.
                texts.append(
                    item
                    if isinstance(item, str)
                    else tokenizer.decode(ids, skip_special_tokens=True)
                )
                tokens += min(len(ids), limit)  # longer inputs are truncated to its limit
        check_request_tokens(tokens, job.get("max_request_tokens"), "inputs")
        return self._queue(job, texts, tokens)

    def _queue(self, job: Job, inputs: list[str] | list[list[str]], tokens: int) -> Ticket:
        """Queue a checked job's ``inputs`` (``tokens`` in all) for the next shared batch."""
        state = EmbeddingJob(job["id"], Ticket(), EventSequence(job["id"]), inputs, tokens)
        with self._lock:
            self._waiting.append(state)
            self._wake()
        return state.ticket

    def tokenize(self, job: Job) -> Tokenized:
        """A (de)tokenize job's answer, by the model's tokenizer (no chat: no template)."""
        with self.intake_lock:
            limit = self.model.max_seq_length or 512
            return tokenized(job, self.intake, len(self.intake), limit)

    def abort(self, message: str) -> None:
        """Embedding jobs take well under a second: the ones running are let finish."""

    def load(self) -> EngineLoad:
        return {
            "running": self._busy,
            "waiting": len(self._waiting),
            "step_seconds": round(self.step_seconds(), 3),
        }

    def slots(self) -> int:
        return self.batch_size

    def bulk_room(self) -> int:
        """Bulk jobs the engine would take now: its batch is all it holds."""
        return max(0, self.batch_size - len(self._waiting) - self._busy)

    def _has_work(self) -> bool:
        return bool(self._waiting)

    def _take(self) -> list[EmbeddingJob]:
        # Concurrent requests share a batch, one batch a step: the replies of a step go out
        # (and their clients send again) while the next step computes.
        taken = take_batch(self._waiting, self.batch_size)
        self._busy = len(taken)
        return taken

    def _run_step(self, work: list[EmbeddingJob]) -> None:
        try:
            self.step(work)
        except Exception:  # noqa: BLE001 - report to the clients, keep the worker alive
            log.exception("engine %s: embedding failed", self.name)
            failure = EngineFailed("The model worker failed while embedding.")
            events: list[Event] = [job.events.error(failure.code, failure.message) for job in work]
            try:
                self.io.exchange(events, [])
            finally:
                for job in work:
                    job.ticket.finish(ERROR, job.served)
        finally:
            self._busy = 0

    def step(self, jobs: list[EmbeddingJob]) -> None:
        """Encode the inputs of ``jobs`` in shared batches and publish one terminal event per
        job. If the shared batch fails, each job is encoded alone, so only a job that fails alone
        fails."""
        with self._timed_step() as started:
            events: list[Event] = []
            outcomes: list[tuple[EmbeddingJob, str]] = []
            for group, vectors, error in run_isolated(jobs, self._encode):
                if vectors is None:
                    log.error("engine %s: embedding failed", self.name, exc_info=error)
                    failure = EngineFailed("The model failed while embedding this input.")
                    for job in group:
                        events.append(job.events.error(failure.code, failure.message))
                        outcomes.append((job, ERROR))
                    continue
                start = 0
                for job in group:
                    end = start + len(job.inputs)
                    events.append(self._done(job, vectors[start:end], started))
                    outcomes.append((job, DONE))
                    start = end
            exchange_patiently(self.io, events, [], self._still_waiting)
            for job, outcome in outcomes:
                job.ticket.finish(outcome, job.served)

    def _done(self, job: EmbeddingJob, values: np.ndarray, started: float) -> DoneEvent:
        """A job's terminal event, with its share of a step's output."""
        return embedding_done(job, values, started)

    def _encode(self, jobs: list[EmbeddingJob]) -> np.ndarray:
        vectors = self.model.encode(
            [text for job in jobs for text in job.inputs],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        # Unit length, like OpenAI's embeddings: in float32, whatever the model ran in (a
        # bfloat16 model's own normalization leaves lengths 1e-3 off).
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return cast(np.ndarray, vectors / np.maximum(norms, 1e-12))


def embedding_done(job: EmbeddingJob, vectors: np.ndarray, started: float) -> DoneEvent:
    """An embedding job's terminal event: its vectors, its usage, and its time in the engine."""
    usage: Usage = {"prompt_tokens": job.tokens, "total_tokens": job.tokens}
    timing: Timing = {"engine": round(time.monotonic() - started, 4)}
    return job.events.done(usage, timing, [_base64(v) for v in vectors])


def _base64(vector: np.ndarray) -> str:
    """A vector as base64 of little-endian float32, the compact form the openai SDK decodes."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()
