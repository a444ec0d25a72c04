"""The playground: a chat page at ``GET /`` (static files, no build step, nothing fetched from
elsewhere), and ``GET /status``, the per-model numbers its status panel shows.

The page calls the same ``/v1`` endpoints as any client, with the key its user types; ``/status``
shows what ``/metrics`` already shows to anyone who reaches the front (no key, like ``/ready``).
"""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify, send_from_directory

bp = Blueprint("playground", __name__)


@bp.get("/")
def page():
    return send_from_directory(current_app.static_folder, "playground/index.html")


@bp.get("/status")
def status():
    """Per model: live workers, sequences running and waiting in the engines, queued jobs."""
    try:
        return jsonify({"models": model_status(current_app.extensions["jobs"])})
    except redis.RedisError as exc:
        return jsonify({"error": f"Redis: {exc}"}), 503


def model_status(jobs) -> list[dict]:
    """What the workers' heartbeats and the queues say of each model (Raises RedisError)."""
    workers = jobs.liveness.workers_by_model(cached=False)
    stalled = jobs.liveness.stalled()
    names = sorted(jobs.registry)
    pipe = jobs.client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    rows = []
    for name, queued in zip(names, pipe.execute(), strict=True):
        statuses = workers.get(name, [])
        loads = [s.get("load", {}).get(name, {}) for s in statuses]
        rows.append(
            {
                "model": name,
                "live_workers": len(statuses),
                "stalled_workers": sum(name in s.get("models", []) for s in stalled),
                "running": sum(x.get("running", 0) for x in loads),
                "waiting": sum(x.get("waiting", 0) for x in loads),
                "queued": queued,
            }
        )
    return rows
