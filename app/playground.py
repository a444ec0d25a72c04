"""The playground: a chat page at ``GET /`` (static files, no build step, nothing fetched from
elsewhere), and ``GET /status``, the per-model numbers its status panel shows.

The page calls the same ``/v1`` endpoints as any client, with the key its user types; ``/status``
shows what ``/metrics`` already shows to anyone who reaches the front (no key, like ``/ready``).
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from app.services import services

bp = Blueprint("playground", __name__)


@bp.get("/")
def page() -> Response:
    return send_from_directory(str(current_app.static_folder), "playground/index.html")


@bp.get("/status")
def status() -> tuple[Response, int] | Response:
    """Per model: live workers, sequences running and waiting in the engines, queued jobs."""
    try:
        return jsonify({"models": services().status.rows()})
    except redis.RedisError as exc:
        return jsonify({"error": f"Redis: {exc}"}), 503
