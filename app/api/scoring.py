"""POST /v1/rerank and /v1/score (see :mod:`app.serving.scoring`)."""

from __future__ import annotations

from flask import Response, jsonify

from app.api.blueprint import bp
from app.body import read_json
from app.services import services


@bp.post("/rerank")
def rerank() -> Response:
    return jsonify(services().scoring.rerank(read_json()))


@bp.post("/score")
def score() -> Response:
    return jsonify(services().scoring.score(read_json()))
