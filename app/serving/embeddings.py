"""Embeddings, request to job and result to response: unit-length vectors, as floats or base64
(little-endian float32; the routes: :mod:`app.api.embeddings`)."""

from __future__ import annotations

import base64
import sys
from array import array
from dataclasses import dataclass
from typing import Any

from app.caps import Caps
from app.disconnect import client_gone_check
from app.errors import APIError
from app.jobs import JobService
from app.limits import RateLimiter
from app.schemas import EmbeddingSchema, load_request
from config.events import Usage
from config.protocol import DONE, Job, JobOptions, embedding_job
from config.registry import EMBEDDING, ModelSpec

SCHEMA = EmbeddingSchema()


def decode_vector(encoded: str) -> list[float]:
    values = array("f", base64.b64decode(encoded))
    if sys.byteorder == "big":
        values.byteswap()  # the wire format is little-endian, as the openai SDK expects
    return values.tolist()


@dataclass(frozen=True)
class PreparedEmbedding:
    """An embeddings request checked and turned into its job: the loaded request, the model's
    entry and the job."""

    data: dict[str, Any]
    spec: ModelSpec
    job: Job


class EmbeddingService:
    """``/v1/embeddings``: one job per request, its vectors."""

    def __init__(self, jobs: JobService, limits: RateLimiter, caps: Caps) -> None:
        self.jobs = jobs
        self.limits = limits
        self.caps = caps

    def serve(self, body: Any) -> dict[str, Any]:
        """Answer an embeddings request (its JSON body)."""
        prepared = self.prepare(body)
        done = self.jobs.collect(prepared.spec, prepared.job, client_gone_check())[-1]
        if done["type"] != DONE:  # collect raises an error event, and ends with the done one
            raise APIError(502, "The model worker's events ended without a result.")
        self.limits.record_usage(done["usage"])
        return render(prepared.data, done["data"], done["usage"])

    def prepare(
        self, body: Any, live: bool = True, options: JobOptions | None = None
    ) -> PreparedEmbedding:
        """A request body checked and turned into its job, with ``options`` besides its own (a
        batch line's); :class:`APIError` for anything wrong. ``live``: the model must have a
        live worker now (a batch line may wait for one)."""
        data = load_request(SCHEMA, body)
        self.caps.check_inputs(len(data["input"]))
        limit = self.caps.check_token_ids(data["input"], "input")
        spec = self.jobs.resolve(data["model"], EMBEDDING, live)
        own: JobOptions = {"user": data.get("user"), "max_request_tokens": limit}
        own.update(options or {})
        return PreparedEmbedding(data, spec, embedding_job(spec.name, data["input"], **own))


def render(
    data: dict[str, Any], vectors: list[str], usage: Usage | dict[str, int]
) -> dict[str, Any]:
    """The response body: the job's vectors (base64) as the request's encoding_format asks."""
    as_base64 = data["encoding_format"] == "base64"
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v if as_base64 else decode_vector(v)}
            for i, v in enumerate(vectors)
        ],
        "model": data["model"],
        "usage": usage,
    }
