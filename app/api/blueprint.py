"""The OpenAI API blueprint, all under /v1 (and :data:`root`, for a few paths outside it): the
route modules register on it, and ``app.api`` imports them (so a route module never imports its
own package). Also what several routes read of a request: its owner, and a list's paging
arguments."""

from __future__ import annotations

from flask import Blueprint, request

from app.auth import require_api_key
from app.errors import APIError
from app.limits import add_rate_limit_headers
from app.services import services

bp = Blueprint("api", __name__, url_prefix="/v1")
# The few API paths outside /v1 (vLLM's /tokenize and /detokenize), under the same keys and
# limits.
root = Blueprint("api_root", __name__)


def _authenticate() -> None:
    require_api_key()


def _enforce_rate_limit() -> None:  # after authentication: a wrong key is not counted
    services().limits.enforce()


for blueprint in (bp, root):
    blueprint.before_request(_authenticate)
    blueprint.before_request(_enforce_rate_limit)
    blueprint.after_request(add_rate_limit_headers)


def request_owner() -> str:
    """The owner of what the current request creates or reads (see :mod:`app.owners`)."""
    return services().owners.current()


def limit_arg(default: int, most: int) -> int:
    """The ``limit`` query argument of a list: 1 to ``most``, ``default`` if absent."""
    limit = request.args.get("limit", str(default))
    # isascii too: str.isdigit takes "²", which int() refuses.
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= most:
        raise APIError(400, f"limit must be an integer from 1 to {most}.", "limit")
    return int(limit)


def order_arg() -> str:
    """The ``order`` query argument of a list: ``asc`` or ``desc`` (the default)."""
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'.", "order")
    return order
