"""Probes for load balancers and orchestrators, outside /v1 (no key, no rate limit).

``GET /health``: the process is up. ``GET /ready``: Redis answers and at least one worker is live.
"""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready():
    jobs = current_app.extensions["jobs"]
    try:
        jobs.client.ping()
        live = jobs.liveness.workers_by_model(cached=False)
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "reason": f"Redis: {exc}"}), 503
    models = sorted(name for name, workers in live.items() if workers)
    if not models:
        return jsonify({"status": "unavailable", "reason": "no live worker"}), 503
    return jsonify({"status": "ready", "models": models})
