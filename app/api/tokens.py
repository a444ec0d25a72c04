"""POST /tokenize and /detokenize, vLLM's paths (also under /v1; see
:mod:`app.serving.tokens`)."""

from __future__ import annotations

from flask import Response, jsonify

from app.api.blueprint import bp, root
from app.body import read_json
from app.services import services


@root.post("/tokenize")
@bp.post("/tokenize")
def tokenize() -> Response:
    return jsonify(services().tokens.tokenize(read_json()))


@root.post("/detokenize")
@bp.post("/detokenize")
def detokenize() -> Response:
    return jsonify(services().tokens.detokenize(read_json()))
