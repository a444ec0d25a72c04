"""The OpenAI API blueprint: one module per endpoint family, all under /v1."""

from flask import Blueprint

from app.auth import require_api_key

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_api_key)

from app.api import chat, completions, edits, embeddings, models  # noqa: E402,F401  (routes)
