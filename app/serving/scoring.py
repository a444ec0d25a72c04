"""Rerank and score: how relevant texts are to others (the routes: :mod:`app.api.scoring`).

A cross-encoder (registry kind ``rerank``) reads each pair in a score job, batched on its queue
like embeddings. An embedding model answers too, out of the box: one embedding job for every
distinct text, and each pair's score is the cosine similarity of its two unit-length vectors.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from app.caps import Caps
from app.disconnect import client_gone_check
from app.errors import APIError, param_names
from app.jobs import JobService
from app.limits import RateLimiter
from app.schemas import load_request
from app.scoring_schemas import RerankSchema, ScoreSchema
from app.serving.embeddings import decode_vector
from config.events import Usage
from config.protocol import DONE, JobOptions, embedding_job, score_job
from config.registry import RERANK, SCORING, ModelSpec

RERANK_SCHEMA, SCORE_SCHEMA = RerankSchema(), ScoreSchema()


class ScoringService:
    """``/v1/rerank`` and ``/v1/score``: one job per request, its scores."""

    def __init__(self, jobs: JobService, limits: RateLimiter, caps: Caps) -> None:
        self.jobs = jobs
        self.limits = limits
        self.caps = caps

    def rerank(self, body: Any) -> dict[str, Any]:
        """The documents by relevance to the query, best first (the ``top_n`` best)."""
        data = load_request(RERANK_SCHEMA, body)
        documents = data["documents"]
        self.caps.check_inputs(len(documents), "documents")
        spec = self.jobs.resolve(data["model"], SCORING)
        pairs = [(data["query"], document) for document in documents]
        scores, usage = self._scores(spec, pairs, data, "documents")
        ranked = sorted(range(len(documents)), key=lambda i: scores[i], reverse=True)
        results = []
        for index in ranked[: data.get("top_n") or None]:
            result: dict[str, Any] = {"index": index, "relevance_score": scores[index]}
            if data["return_documents"]:
                result["document"] = {"text": documents[index]}
            results.append(result)
        return {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": data["model"],
            "results": results,
            "usage": {"total_tokens": usage["total_tokens"]},
        }

    def score(self, body: Any) -> dict[str, Any]:
        """One score per pair: ``text_1`` against each of ``text_2``, or pair by pair."""
        data = load_request(SCORE_SCHEMA, body)
        first, second = data["text_1"], data["text_2"]
        self.caps.check_inputs(len(second), "text_2")
        spec = self.jobs.resolve(data["model"], SCORING)
        pairs = list(zip(first * len(second) if len(first) == 1 else first, second, strict=True))
        scores, usage = self._scores(spec, pairs, data, "text_2")
        return {
            "id": f"score-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": data["model"],
            "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
            "usage": usage,
        }

    def _scores(
        self, spec: ModelSpec, pairs: list[tuple[str, str]], data: dict[str, Any], param: str
    ) -> tuple[list[float], Usage]:
        """Each pair's score by ``spec`` (a cross-encoder's, or an embedding model's cosine
        similarity), and the job's usage."""
        options: JobOptions = {
            "user": data.get("user"),
            "max_request_tokens": self.caps.max_request_tokens,
        }
        if spec.kind == RERANK:
            job = score_job(spec.name, [list(pair) for pair in pairs], **options)
        else:
            texts = list(dict.fromkeys(text for pair in pairs for text in pair))
            job = embedding_job(spec.name, list(texts), **options)
        names = param_names(pairs=param, inputs=param)
        done = self.jobs.collect(spec, job, client_gone_check(), names)[-1]
        if done["type"] != DONE:  # collect raises an error event, and ends with the done one
            raise APIError(502, "The model worker's events ended without a result.")
        self.limits.record_usage(done["usage"])
        usage: Usage = {
            "prompt_tokens": done["usage"].get("prompt_tokens", 0),
            "total_tokens": done["usage"]["total_tokens"],
        }
        if spec.kind == RERANK:
            return list(done.get("scores") or []), usage
        vectors = {
            text: decode_vector(v) for text, v in zip(texts, done.get("data") or [], strict=True)
        }
        return [_dot(vectors[a], vectors[b]) for a, b in pairs], usage


def _dot(a: list[float], b: list[float]) -> float:
    """The cosine similarity of two unit-length vectors."""
    return sum(x * y for x, y in zip(a, b, strict=True))
