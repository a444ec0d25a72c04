"""What each model's workers and queues say now: live and stalled workers, rows running and
waiting in their engines (from the heartbeats), requests queued (turns on the model's Celery
queue, and its flex list), and each API key's work waiting and served (config/lanes.py).
``/status`` and ``/metrics`` read it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

import redis

from app.liveness import Liveness
from config.keys import flex_queue
from config.lanes import KeyLoad, Lanes


class ModelRow(TypedDict):
    model: str
    live_workers: int
    stalled_workers: int
    running: int
    waiting: int
    queued: int


class ModelStatus:
    """The status of the registry's models (``models``: their names, each its queue's)."""

    def __init__(self, client: redis.Redis, liveness: Liveness, models: Iterable[str]) -> None:
        self.client = client
        self.liveness = liveness
        self.models = sorted(models)
        self.lanes = Lanes(client)

    def rows(self) -> list[ModelRow]:
        """What the workers' heartbeats and the queues say of each model, for ``/status`` and
        ``/metrics`` (raises ``RedisError``)."""
        workers = self.liveness.workers_by_model(cached=False)
        stalled = self.liveness.stalled()
        pipe = self.client.pipeline(transaction=False)
        for name in self.models:
            pipe.llen(name)
            pipe.llen(flex_queue(name))
        lengths = pipe.execute()  # each model's Celery queue, then its flex list
        queued_of = [
            celery + flex for celery, flex in zip(lengths[::2], lengths[1::2], strict=True)
        ]
        rows: list[ModelRow] = []
        for name, queued in zip(self.models, queued_of, strict=True):
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

    def key_loads(self) -> dict[str, dict[str, KeyLoad]]:
        """Per model, each API key's (owner hash's) work waiting in its lane and tokens served,
        for ``/metrics`` (raises ``RedisError``)."""
        return {name: self.lanes.loads(name) for name in self.models}
