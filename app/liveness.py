"""Which models have a live worker, read from the workers' heartbeats (cached briefly)."""

from __future__ import annotations

import threading
import time

import redis

from config.protocol import WORKERS_SET, decode, heartbeat_key


class Liveness:
    def __init__(self, client: redis.Redis, cache_seconds: float = 1.0) -> None:
        self.client = client
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, list[dict]]] | None = None

    def workers_by_model(self, cached: bool = True) -> dict[str, list[dict]]:
        """Model name -> the statuses of its live workers. Raises ``redis.RedisError``.

        ``cached`` answers from the last read if it is under ``cache_seconds`` old: the check
        every request makes before it is enqueued, which Redis then confirms anyway.
        """
        with self._lock:
            fresh = self._cached and time.monotonic() - self._cached[0] < self.cache_seconds
            if cached and fresh:
                return self._cached[1]
        ids = sorted(
            i.decode() if isinstance(i, bytes) else i for i in self.client.smembers(WORKERS_SET)
        )
        statuses = self.client.mget([heartbeat_key(i) for i in ids]) if ids else []
        by_model: dict[str, list[dict]] = {}
        dead = []
        for worker_id, raw in zip(ids, statuses, strict=True):
            if raw is None:
                dead.append(worker_id)  # heartbeat expired: the worker is gone
                continue
            status = decode(raw)
            if status.get("draining"):
                continue  # shutting down: it finishes its jobs but takes no new ones
            for model in status.get("models", []):
                by_model.setdefault(model, []).append(status)
        if dead:
            self.client.srem(WORKERS_SET, *dead)
        with self._lock:
            self._cached = (time.monotonic(), by_model)
        return by_model

    def is_live(self, model: str) -> bool:
        return bool(self.workers_by_model().get(model))
