"""POST /v1/embeddings: unit-length vectors, as floats or base64 (little-endian float32)."""

from __future__ import annotations

import base64
import sys
from array import array

from flask import current_app, jsonify

from app.api import bp
from app.body import read_json
from app.caps import check_inputs, check_token_ids
from app.disconnect import client_gone_check
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
    return _embeddings(read_json())


@bp.post("/engines/<path:model>/embeddings")
def engine_embeddings(model: str):
    """The legacy per-engine path, as FastChat also serves it: the model comes from the URL."""
    body = read_json()
    return _embeddings({**body, "model": model} if isinstance(body, dict) else body)


def _embeddings(body):
    data = load_request(SCHEMA, body)
    check_inputs(len(data["input"]))
    limit = check_token_ids(data["input"], "input")
    jobs = current_app.extensions["jobs"]
    spec = jobs.resolve(data["model"], EMBEDDING)
    job = {
        "kind": "embedding",
        "inputs": data["input"],
        "user": data.get("user"),
        "max_request_tokens": limit,
    }
    done = jobs.collect(spec, job, client_gone_check())[-1]
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
