"""POST /v1/completions (see :mod:`app.serving.completions`)."""

from __future__ import annotations

from flask import Response

from app.api.blueprint import bp
from app.body import read_json
from app.services import services
from app.serving.completions import FORMAT
from app.sse import respond


@bp.post("/completions")
def completions() -> Response:
    return respond(services().generation.serve(FORMAT, read_json()))
