"""A worker's heartbeat: a Redis key with a TTL naming its models and load, kept fresh."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from config.keys import WORKERS_SET, heartbeat_key
from config.protocol import encode
from config.status import WorkerStatus

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        worker_id: str,
        models: list[str],
        load: Callable[[], dict[str, dict[str, Any]]],
        interval: float,
        ttl: float,
        before_beat: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.models = models
        self.load = load
        self.interval = interval
        self.ttl = ttl
        self.before_beat = before_beat  # runs on the heartbeat's thread before each beat
        self.draining = False  # shutting down: finishing its jobs, taking no new ones
        self.stalled: list[str] = []  # models whose engine stalled: the worker is not live
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self, ttl: float | None = None) -> None:
        status: WorkerStatus = {
            "id": self.worker_id,
            "models": self.models,
            "draining": self.draining,
            "stalled": self.stalled,
            "load": self.load(),
            "ts": time.time(),
        }
        pipe = self.client.pipeline(transaction=False)
        pipe.set(heartbeat_key(self.worker_id), encode(status), px=int((ttl or self.ttl) * 1000))
        pipe.sadd(WORKERS_SET, self.worker_id)
        pipe.execute()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.delete(heartbeat_key(self.worker_id))
            self.client.srem(WORKERS_SET, self.worker_id)
        except redis.RedisError:
            log.warning("could not remove the heartbeat of %s", self.worker_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.before_beat is not None:
                    self.before_beat()
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed (%s); retrying", exc)
