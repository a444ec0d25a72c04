"""The embedding engine: merges the inputs of concurrent jobs into shared forward passes."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.protocol import DONE, ERROR, EventSequence
from workers.engine.errors import EngineFailed
from workers.engine.intake import check_request_tokens, tokenize
from workers.engine.io import JobIO, Ticket, exchange_patiently
from workers.engine.isolation import run_isolated

log = logging.getLogger(__name__)


@dataclass
class _Job:
    id: str
    ticket: Ticket
    inputs: list[str]
    tokens: int  # what its usage reports: the tokens the model reads (after truncation)


def take_batch(waiting: deque[Any], size: int) -> list[Any]:
    """The jobs at the front of ``waiting`` for one step: up to ``size`` inputs in all, and
    always at least one job (a larger one runs in several forward passes)."""
    taken, count = [], 0
    while waiting and (not taken or count + len(waiting[0].inputs) <= size):
        taken.append(waiting.popleft())
        count += len(taken[-1].inputs)
    return taken


class EmbeddingEngine:
    """Owns one sentence-transformers model and the thread that encodes queued jobs together."""

    info: dict[str, str] = {}  # what the heartbeat tells of it (device, dtype), set by loading

    def __init__(self, model: Any, io: JobIO, batch_size: int = 64, name: str = "model") -> None:
        self.model = model
        self.io = io
        self.batch_size = batch_size
        self.name = name
        self._lock = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = 0
        self._step_started: float | None = None

    def submit(self, job: dict[str, Any]) -> Ticket:
        """Check and tokenize ``job``'s inputs and queue it for the next shared batch; raise
        :class:`InvalidRequest` for an input the model cannot take. Tokenizing here, in the
        task's thread, keeps a bad input from failing the batch it would have joined."""
        tokenizer, limit = self.model.tokenizer, self.model.max_seq_length
        vocab = len(tokenizer)
        texts, tokens = [], 0
        for item in job["inputs"]:
            ids = tokenize(tokenizer, item, vocab, "input", max_length=limit)
            # Token-id inputs are decoded to text: sentence-transformers tokenizes for itself.
            texts.append(
                item if isinstance(item, str) else tokenizer.decode(ids, skip_special_tokens=True)
            )
            tokens += min(len(ids), limit)  # longer inputs are truncated to the model's limit
        check_request_tokens(tokens, job.get("max_request_tokens"), "input")
        state = _Job(id=job["id"], ticket=Ticket(), inputs=texts, tokens=tokens)
        with self._lock:
            self._waiting.append(state)
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
        """Embedding jobs take well under a second: the ones running are let finish."""

    def load(self) -> dict[str, Any]:
        return {
            "running": self._busy,
            "waiting": len(self._waiting),
            "step_seconds": round(self.step_seconds(), 3),
        }

    def bulk_room(self) -> int:
        """Bulk jobs the engine would take now: its batch is all it holds."""
        return max(0, self.batch_size - len(self._waiting) - self._busy)

    def step_seconds(self) -> float:
        """Seconds the batch under way has run; 0 between batches."""
        started = self._step_started
        return 0.0 if started is None else time.monotonic() - started

    def stalled(self, timeout: float) -> bool:
        """Whether one batch has run for ``timeout`` seconds, or the thread is gone with work."""
        if self.step_seconds() >= timeout:
            return True
        dead = self._thread is not None and not self._thread.is_alive() and not self._stopping
        return dead and bool(self._waiting)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                # Concurrent requests share a batch, one batch a step: the replies of a step go
                # out (and their clients send again) while the next step computes.
                taken = take_batch(self._waiting, self.batch_size)
                self._busy = len(taken)
            try:
                self.step(taken)
            except Exception:  # noqa: BLE001 - report to the clients, keep the worker alive
                log.exception("engine %s: embedding failed", self.name)
                failure = EngineFailed("The model worker failed while embedding.")
                events = [
                    EventSequence(job.id).error(failure.code, failure.message) for job in taken
                ]
                try:
                    self.io.exchange(events, [])
                finally:
                    for job in taken:
                        job.ticket.finish(ERROR)
            finally:
                self._busy = 0

    def step(self, jobs: list[_Job]) -> None:
        """Encode the inputs of ``jobs`` in shared batches and publish one terminal event per
        job. If the shared batch fails, each job is encoded alone, so only a job that fails alone
        fails."""
        self._step_started = started = time.monotonic()
        try:
            events, outcomes = [], []
            for group, vectors, error in run_isolated(jobs, self._encode):
                if error is not None:
                    log.error("engine %s: embedding failed", self.name, exc_info=error)
                    failure = EngineFailed("The model failed while embedding this input.")
                    for job in group:
                        events.append(EventSequence(job.id).error(failure.code, failure.message))
                        outcomes.append((job, ERROR))
                    continue
                start = 0
                for job in group:
                    end = start + len(job.inputs)
                    seq = EventSequence(job.id)
                    events.append(embedding_done(seq, vectors[start:end], job.tokens, started))
                    outcomes.append((job, DONE))
                    start = end
            exchange_patiently(self.io, events, [], self._still_waiting)
            for job, outcome in outcomes:
                job.ticket.finish(outcome)
        finally:
            self._step_started = None

    def _still_waiting(self) -> bool:
        """While events wait for Redis, the batch is not stuck: its clock starts again."""
        self._step_started = time.monotonic()
        return not self._stopping

    def _encode(self, jobs: list[_Job]) -> np.ndarray:
        vectors = self.model.encode(
            [text for job in jobs for text in job.inputs],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        # Unit length, like OpenAI's embeddings: in float32, whatever the model ran in (a
        # bfloat16 model's own normalization leaves lengths 1e-3 off).
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def embedding_done(
    events: EventSequence, vectors: np.ndarray, tokens: int, started: float | None = None
) -> dict[str, Any]:
    """An embedding job's terminal event: its vectors, its usage, and its time in the engine."""
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    timing = {"engine": round(time.monotonic() - started, 4) if started is not None else 0.0}
    return events.make(DONE, data=[_base64(v) for v in vectors], usage=usage, timing=timing)


def _base64(vector: np.ndarray) -> str:
    """A vector as base64 of little-endian float32, the compact form the openai SDK decodes."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()
