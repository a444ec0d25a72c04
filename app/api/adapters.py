"""POST /v1/load_lora_adapter and /v1/unload_lora_adapter: vLLM's paths, shapes and plain-text
answers, allowed only with an admin key (see :mod:`app.adapters`)."""

from __future__ import annotations

from flask import Response

from app.api.blueprint import bp
from app.auth import require_admin
from app.body import read_json
from app.services import services


@bp.post("/load_lora_adapter")
def load_lora_adapter() -> Response:
    require_admin()
    return Response(services().adapters.load(read_json()), mimetype="text/plain")


@bp.post("/unload_lora_adapter")
def unload_lora_adapter() -> Response:
    require_admin()
    return Response(services().adapters.unload(read_json()), mimetype="text/plain")
