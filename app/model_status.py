"""What each model's workers and queues say now: live and stalled workers, rows running and
waiting in their engines (from the heartbeats), and requests queued (on the model's Celery queue
or its flex list). ``/status`` and ``/metrics`` read it."""

from __future__ import annotations

from app.jobs import JobService
from config.protocol import flex_queue


def model_status(jobs: JobService) -> list[dict]:
    """What the workers' heartbeats and the queues say of each model, for ``/status`` and
    ``/metrics`` (raises ``RedisError``)."""
    workers = jobs.liveness.workers_by_model(cached=False)
    stalled = jobs.liveness.stalled()
    names = sorted(jobs.registry)
    pipe = jobs.client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        pipe.llen(flex_queue(name))
    lengths = pipe.execute()  # each model's Celery queue, then its flex list
    queued_of = [celery + flex for celery, flex in zip(lengths[::2], lengths[1::2], strict=True)]
    rows = []
    for name, queued in zip(names, queued_of, strict=True):
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
