"""Which models have a live worker, read from the workers' heartbeats (cached briefly).

A worker is live while its heartbeat key exists, unless it is draining (shutting down: it
finishes its jobs but takes no new ones) or its heartbeat says an engine stalled (it exits).
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from config.keys import WORKERS_SET, heartbeat_key
from config.status import WorkerStatus, status_from_wire

log = logging.getLogger(__name__)


class Liveness:
    def __init__(self, client: redis.Redis, cache_seconds: float = 1.0) -> None:
        self.client = client
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[WorkerStatus]] | None = None

    def statuses(self, cached: bool = True) -> list[WorkerStatus]:
        """Every worker's last heartbeat status, live or not. Raises ``redis.RedisError``.

        ``cached`` answers from the last read if it is under ``cache_seconds`` old: the check
        every request makes before it is enqueued, which Redis then confirms anyway.
        """
        with self._lock:
            last = self._cached
            if cached and last is not None and self._fresh():
                return last[1]
        ids = sorted(
            i.decode() if isinstance(i, bytes) else i for i in self.client.smembers(WORKERS_SET)
        )
        raws = self.client.mget([heartbeat_key(i) for i in ids]) if ids else []
        statuses: list[WorkerStatus] = []
        dead = []
        for worker_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                dead.append(worker_id)  # heartbeat expired: the worker is gone
            else:
                try:
                    statuses.append(status_from_wire(raw))
                except ValueError:  # not a worker's status (MalformedMessage is one)
                    log.error("ignoring a malformed heartbeat of %s", worker_id)
        if dead:
            self.client.srem(WORKERS_SET, *dead)
        with self._lock:
            self._cached = (time.monotonic(), statuses)
        return statuses

    def workers_by_model(self, cached: bool = True) -> dict[str, list[WorkerStatus]]:
        """Model name -> the statuses of its live workers. Raises ``redis.RedisError``."""
        by_model: dict[str, list[WorkerStatus]] = {}
        for status in self.statuses(cached):
            if is_live(status):
                for model in status.get("models", []):
                    by_model.setdefault(model, []).append(status)
        return by_model

    def stalled(self, cached: bool = True) -> list[WorkerStatus]:
        """The statuses of workers whose engine stalled (until their heartbeat key expires)."""
        return [s for s in self.statuses(cached) if s.get("stalled")]

    def is_live(self, model: str) -> bool:
        """Whether ``model`` has a live worker. A "no" from the cache is read again: a worker
        that has just come up is served at once (the cache only saves reads for the "yes"); a
        "no" just read from Redis stands."""
        from_cache = self._fresh()
        if self.workers_by_model().get(model):
            return True
        return from_cache and bool(self.workers_by_model(cached=False).get(model))

    def _fresh(self) -> bool:
        """Whether the last read is recent enough to answer from."""
        cached = self._cached
        return cached is not None and time.monotonic() - cached[0] < self.cache_seconds

    def worker_live(self, worker_id: str) -> bool:
        """Whether one worker (the one holding a job) is there and not stalled; never cached."""
        raw = self.client.get(heartbeat_key(worker_id))
        return raw is not None and not status_from_wire(raw).get("stalled")


def is_live(status: WorkerStatus) -> bool:
    return not status.get("draining") and not status.get("stalled")
