"""The OpenAI API blueprint: one module per endpoint family, all under /v1."""

from flask import Blueprint

from app.auth import require_api_key
from app.limits import add_rate_limit_headers, enforce_rate_limit

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_api_key)
bp.before_request(enforce_rate_limit)
bp.after_request(add_rate_limit_headers)

from app.api import (  # noqa: E402,F401  (routes)
    batches,
    chat,
    completions,
    edits,
    embeddings,
    files,
    models,
    responses,
)
