"""POST /v1/embeddings, and FastChat's per-engine path (see :mod:`app.serving.embeddings`)."""

from __future__ import annotations

from app.api.blueprint import bp
from app.body import read_json
from app.serving.embeddings import serve_embeddings


@bp.post("/embeddings")
def embeddings():
    return serve_embeddings(read_json())


@bp.post("/engines/<path:model>/embeddings")
def engine_embeddings(model: str):
    """The legacy per-engine path, as FastChat also serves it: the model comes from the URL."""
    body = read_json()
    return serve_embeddings({**body, "model": model} if isinstance(body, dict) else body)
