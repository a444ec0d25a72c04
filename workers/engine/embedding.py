"""The embedding engine: merges the inputs of concurrent jobs into shared forward passes."""

from __future__ import annotations

import base64
import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from config.protocol import DONE, ERROR, EventSequence, error_body
from workers.engine.io import JobIO, JobRejected, Ticket

log = logging.getLogger(__name__)


class EmbeddingEngine:
    """Owns one sentence-transformers model and the thread that encodes queued jobs together."""

    info: dict[str, str] = {}  # what the heartbeat tells of it (device, dtype), set by loading

    def __init__(self, model: Any, io: JobIO, batch_size: int = 64, name: str = "model") -> None:
        self.model = model
        self.io = io
        self.batch_size = batch_size
        self.name = name
        self._lock = threading.Condition()
        self._waiting: deque[tuple[dict[str, Any], Ticket]] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = 0

    def submit(self, job: dict[str, Any]) -> Ticket:
        """Queue ``job`` for the next shared batch; raise :class:`JobRejected` if it is invalid."""
        vocab = len(self.model.tokenizer)
        for item in job["inputs"]:
            if not isinstance(item, str) and any(not 0 <= t < vocab for t in item):
                raise JobRejected(400, f"Token ids in the input must be in [0, {vocab}).", "input")
        ticket = Ticket()
        with self._lock:
            self._waiting.append((job, ticket))
            self._lock.notify()
        return ticket

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

    def load(self) -> dict[str, int]:
        return {"running": self._busy, "waiting": len(self._waiting)}

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                # Everything queued now is encoded together: concurrent requests share batches.
                taken = list(self._waiting)
                self._waiting.clear()
                self._busy = len(taken)
            try:
                self.step(taken)
            except Exception:  # noqa: BLE001 - report to the clients, keep the worker alive
                log.exception("engine %s: embedding failed", self.name)
                body = error_body("The model worker failed while embedding.", "server_error")
                self.io.exchange(
                    [EventSequence(job["id"]).make(ERROR, status=500, **body) for job, _ in taken],
                    [],
                )
                for _, ticket in taken:
                    ticket.finish(ERROR)
            finally:
                self._busy = 0

    def step(self, jobs: list[tuple[dict[str, Any], Ticket]]) -> None:
        """Encode the inputs of ``jobs`` in shared batches and publish one ``done`` per job."""
        inputs = [item for job, _ in jobs for item in job["inputs"]]
        # Token-id inputs are decoded to text: sentence-transformers tokenizes for itself.
        decode = self.model.tokenizer.decode
        texts = [i if isinstance(i, str) else decode(i, skip_special_tokens=True) for i in inputs]
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,  # unit length, like OpenAI's embeddings
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        counts = self._token_counts(inputs)
        events, start = [], 0
        for job, _ in jobs:
            end = start + len(job["inputs"])
            events.append(
                embedding_done(EventSequence(job["id"]), vectors[start:end], sum(counts[start:end]))
            )
            start = end
        self.io.exchange(events, [])
        for _, ticket in jobs:
            ticket.finish(DONE)

    def _token_counts(self, inputs: list) -> list[int]:
        texts = [i for i in inputs if isinstance(i, str)]
        limit = self.model.max_seq_length
        encoded = iter(
            self.model.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
            if texts
            else []
        )
        return [len(next(encoded)) if isinstance(i, str) else min(len(i), limit) for i in inputs]


def embedding_done(events: EventSequence, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """An embedding job's terminal event: its vectors and its usage."""
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return events.make(DONE, data=[_base64(v) for v in vectors], usage=usage)


def _base64(vector: np.ndarray) -> str:
    """A vector as base64 of little-endian float32, the compact form the openai SDK decodes."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()
