"""POST /v1/rerank and /v1/score, and vLLM's other paths for them: /rerank, /v2/rerank (where
Cohere's v2 clients look) and /score (see :mod:`app.serving.scoring`)."""

from __future__ import annotations

from flask import Response, jsonify

from app.api.blueprint import bp, root
from app.body import read_json
from app.services import services


@root.post("/rerank")
@root.post("/v2/rerank")
@bp.post("/rerank")
def rerank() -> Response:
    return jsonify(services().scoring.rerank(read_json()))


@root.post("/score")
@bp.post("/score")
def score() -> Response:
    return jsonify(services().scoring.score(read_json()))
