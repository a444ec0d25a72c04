"""POST /v1/completions (see :mod:`app.serving.completions`)."""

from __future__ import annotations

from app.api.blueprint import bp
from app.serving.completions import FORMAT
from app.serving.generation import serve_generation


@bp.post("/completions")
def completions():
    return serve_generation(FORMAT)
