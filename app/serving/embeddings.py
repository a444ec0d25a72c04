"""Embeddings, request to job and result to response: unit-length vectors, as floats or base64
(little-endian float32; the routes: :mod:`app.api.embeddings`)."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from flask import current_app, jsonify

from app.caps import check_inputs, check_token_ids
from app.disconnect import client_gone_check
from app.limits import record_usage
from app.schemas import EmbeddingSchema, load_request
from config.registry import EMBEDDING, ModelSpec

SCHEMA = EmbeddingSchema()


def _floats(encoded: str) -> list[float]:
    values = array("f", base64.b64decode(encoded))
    if sys.byteorder == "big":
        values.byteswap()  # the wire format is little-endian, as the openai SDK expects
    return values.tolist()


def serve_embeddings(body: Any):
    """Answer an embeddings request (its JSON body): one job, its vectors."""
    data, spec, job = prepare(body)
    jobs = current_app.extensions["jobs"]
    done = jobs.collect(spec, job, client_gone_check())[-1]
    record_usage(done["usage"])
    return jsonify(render(data, done["data"], done["usage"]))


def prepare(body: Any, live: bool = True) -> tuple[dict, ModelSpec, dict]:
    """A request body checked and turned into its job (see ``generation.prepare``)."""
    data = load_request(SCHEMA, body)
    check_inputs(len(data["input"]))
    limit = check_token_ids(data["input"], "input")
    spec = current_app.extensions["jobs"].resolve(data["model"], EMBEDDING, live)
    job = {
        "kind": "embedding",
        "inputs": data["input"],
        "user": data.get("user"),
        "max_request_tokens": limit,
    }
    return data, spec, job


def render(data: dict, vectors: list[str], usage: dict) -> dict:
    """The response body: the job's vectors (base64) as the request's encoding_format asks."""
    as_base64 = data["encoding_format"] == "base64"
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v if as_base64 else _floats(v)}
            for i, v in enumerate(vectors)
        ],
        "model": data["model"],
        "usage": usage,
    }
