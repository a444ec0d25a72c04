"""POST /v1/edits (see :mod:`app.serving.edits`)."""

from __future__ import annotations

from flask import Response

from app.api.blueprint import bp
from app.body import read_json
from app.services import services
from app.serving.edits import FORMAT
from app.sse import respond


@bp.post("/edits")
def edits() -> Response:
    return respond(services().generation.serve(FORMAT, read_json()))
