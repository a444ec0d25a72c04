"""POST /v1/embeddings, and FastChat's per-engine path (see :mod:`app.serving.embeddings`)."""

from __future__ import annotations

from flask import Response, jsonify

from app.api.blueprint import bp
from app.body import read_json
from app.services import services


@bp.post("/embeddings")
def embeddings() -> Response:
    return jsonify(services().embeddings.serve(read_json()))


@bp.post("/engines/<path:model>/embeddings")
def engine_embeddings(model: str) -> Response:
    """The legacy per-engine path, as FastChat also serves it: the model comes from the URL."""
    body = read_json()
    body = {**body, "model": model} if isinstance(body, dict) else body
    return jsonify(services().embeddings.serve(body))
