"""POST /v1/chat/completions (see :mod:`app.serving.chat`)."""

from __future__ import annotations

from flask import Response

from app.api.blueprint import bp
from app.body import read_json
from app.services import services
from app.serving.chat import FORMAT
from app.sse import respond


@bp.post("/chat/completions")
def chat_completions() -> Response:
    return respond(services().generation.serve(FORMAT, read_json()))
