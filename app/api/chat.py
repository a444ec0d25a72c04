"""POST /v1/chat/completions (see :mod:`app.serving.chat`)."""

from __future__ import annotations

from app.api.blueprint import bp
from app.serving.chat import FORMAT
from app.serving.generation import serve_generation


@bp.post("/chat/completions")
def chat_completions():
    return serve_generation(FORMAT)
