"""The OpenAI API blueprint, all under /v1: the route modules register on it, and
``app.api`` imports them (so a route module never imports its own package)."""

from flask import Blueprint

from app.auth import require_api_key
from app.limits import add_rate_limit_headers, enforce_rate_limit

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_api_key)
bp.before_request(enforce_rate_limit)
bp.after_request(add_rate_limit_headers)
