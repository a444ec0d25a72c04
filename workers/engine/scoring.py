"""The scoring engine: a cross-encoder (sentence-transformers' ``CrossEncoder``) reads text pairs
and says how relevant the second text is to the first, for ``/v1/rerank`` and ``/v1/score``.
Concurrent jobs' pairs share forward passes, as embeddings do (it is the embedding engine's loop
with another model call and another result)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from config.events import DoneEvent, Timing, Usage
from config.protocol import SCORE, Job
from workers.engine.checks import check_request_tokens, tokenize
from workers.engine.embedding import EmbeddingEngine, EmbeddingJob
from workers.engine.errors import InvalidRequest, JobFailed
from workers.engine.io import Ticket


class ScoringEngine(EmbeddingEngine):
    """Owns one cross-encoder and the thread that scores queued jobs' pairs together."""

    def submit(self, job: Job) -> Ticket:
        """Check and count ``job``'s pairs and queue it for the next shared batch; raise
        :class:`InvalidRequest` for a pair the model cannot take."""
        if job.get("kind") != SCORE:
            raise JobFailed(f"The model {self.name} only scores text pairs.")
        tokenizer, limit = self.intake, self.model.max_seq_length or 512
        vocab = len(tokenizer)
        pairs: list[list[str]] = []
        tokens = 0
        with self.intake_lock:
            for number, pair in enumerate(job.get("pairs") or []):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise InvalidRequest("A pair must be two texts.", f"pairs[{number}]")
                for side, text in enumerate(pair):
                    if not isinstance(text, str):
                        raise InvalidRequest("A pair must be two texts.", f"pairs[{number}]")
                    tokenize(tokenizer, text, vocab, f"pairs[{number}][{side}]")  # checked
                # The pair as the model reads it, its special tokens as its kind puts them.
                length = len(tokenizer(pair[0], pair[1])["input_ids"])
                pairs.append(pair)
                tokens += min(length, limit)  # a longer pair is truncated to the model's limit
        check_request_tokens(tokens, job.get("max_request_tokens"), "pairs")
        return self._queue(job, pairs, tokens)

    def _encode(self, jobs: list[EmbeddingJob]) -> np.ndarray:
        pairs: list[Any] = [tuple(pair) for job in jobs for pair in job.inputs]
        scores = np.asarray(
            self.model.predict(
                pairs,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
                # Probabilities from a model of several labels, as from one (its sigmoid).
                apply_softmax=self.model.num_labels > 1,
            ),
            dtype=np.float32,
        )
        # One score per pair: a model of several labels scores by its last label's probability
        # (the "relevant" one of a two-label reranker).
        return scores.reshape(len(pairs), -1)[:, -1]

    def _done(self, job: EmbeddingJob, values: np.ndarray, started: float) -> DoneEvent:
        usage: Usage = {"prompt_tokens": job.tokens, "total_tokens": job.tokens}
        timing: Timing = {"engine": round(time.monotonic() - started, 4)}
        return job.events.done(usage, timing, scores=[float(v) for v in values])
