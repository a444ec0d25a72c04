"""Probes for load balancers, orchestrators and Prometheus, outside /v1 (no key, no rate limit).

``GET /health``: the process is up. ``GET /ready``: Redis answers and at least one worker is live;
it also names the workers whose engine stalled. ``GET /metrics``: the front's metrics
(:mod:`app.metrics`).
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from app.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready() -> tuple[Response, int] | Response:
    jobs = services().jobs
    try:
        jobs.client.ping()
        live = jobs.liveness.workers_by_model(cached=False)
        stalled = jobs.liveness.stalled()
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "reason": f"Redis: {exc}"}), 503
    models = sorted(name for name, workers in live.items() if workers)
    # A worker whose engine stalled exits; it is named here until its heartbeat key expires.
    stuck = [{"worker": s["id"], "models": s.get("stalled", [])} for s in stalled]
    if not models:
        reason = "no live worker" + (f" ({len(stuck)} stalled)" if stuck else "")
        return jsonify({"status": "unavailable", "reason": reason, "stalled": stuck}), 503
    return jsonify({"status": "ready", "models": models, "stalled": stuck})


@bp.get("/metrics")
def metrics() -> Response:
    return services().metrics.exposition()
