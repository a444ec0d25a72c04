"""POST /v1/embeddings: unit-length vectors, as floats or base64 (little-endian float32)."""

from __future__ import annotations

import base64
import sys
from array import array

from flask import current_app, jsonify, request

from app.api import bp
from app.limits import record_usage
from app.schemas import EmbeddingSchema, load_request
from config.registry import EMBEDDING

SCHEMA = EmbeddingSchema()


def _floats(encoded: str) -> list[float]:
    values = array("f", base64.b64decode(encoded))
    if sys.byteorder == "big":
        values.byteswap()  # the wire format is little-endian, as the openai SDK expects
    return values.tolist()


@bp.post("/embeddings")
def embeddings():
    return _embeddings(request.get_json(force=True, silent=True))


@bp.post("/engines/<path:model>/embeddings")
def engine_embeddings(model: str):
    """The legacy per-engine path, as FastChat also serves it: the model comes from the URL."""
    body = request.get_json(force=True, silent=True)
    return _embeddings({**body, "model": model} if isinstance(body, dict) else body)


def _embeddings(body):
    data = load_request(SCHEMA, body)
    jobs = current_app.extensions["jobs"]
    spec = jobs.resolve(data["model"], EMBEDDING)
    job = {"kind": "embedding", "inputs": data["input"], "user": data.get("user")}
    done = jobs.collect(spec, job)[-1]
    record_usage(done["usage"])
    as_base64 = data["encoding_format"] == "base64"
    return jsonify(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v if as_base64 else _floats(v)}
                for i, v in enumerate(done["data"])
            ],
            "model": data["model"],
            "usage": done["usage"],
        }
    )
