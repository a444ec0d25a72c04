"""The Redis side of an engine's :class:`JobIO`: one pipelined round trip per engine step.

Detached jobs (background responses, batch lines: nobody listens to their events) also have their
result assembled here from the same events, and recorded with their terminal event in the same
round trip, once (``SET NX``): a redelivered attempt cannot record it twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import redis

from config.protocol import (
    DETACHED_SET,
    TERMINAL,
    cancel_key,
    encode,
    events_channel,
    finished_key,
)
from config.results import ResultBuilder

FINISHED_TTL = 24 * 3600


# Record a result once, and count it in its batch's progress only if it was recorded.
RECORD_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) and KEYS[2] ~= '' then
    redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return 1
"""


@dataclass
class _Detached:
    origin: str
    result_key: str
    ttl: int
    progress_key: str = ""
    builder: ResultBuilder = field(default_factory=ResultBuilder)


class RedisJobIO:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._detached: dict[str, _Detached] = {}  # job id -> where its result goes
        self._lock = threading.Lock()  # task threads register, the engine's thread reads

    def detach(
        self, job_id: str, origin: str, result_key: str, ttl: int, progress_key: str = ""
    ) -> None:
        """Record the result of ``job_id`` under ``result_key`` when it ends (and count it in
        ``progress_key``)."""
        with self._lock:
            self._detached[job_id] = _Detached(origin, result_key, ttl, progress_key)

    def exchange(self, events: list[dict[str, Any]], job_ids: list[str]) -> set[str]:
        """Publish ``events`` and mark terminal jobs finished (recording detached jobs' results);
        return the cancelled ``job_ids``."""
        if not events and not job_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.publish(events_channel(event["job"]), encode(event))
            if event["type"] in TERMINAL:
                pipe.set(finished_key(event["job"]), outcome(event), ex=FINISHED_TTL)
            self._record(pipe, event)
        if job_ids:
            pipe.mget([cancel_key(job_id) for job_id in job_ids])
        results = pipe.execute()
        if not job_ids:
            return set()
        return {job_id for job_id, flag in zip(job_ids, results[-1], strict=True) if flag}

    def _record(self, pipe: Any, event: dict[str, Any]) -> None:
        with self._lock:
            detached = self._detached.get(event["job"])
        if detached is None:
            return
        result = detached.builder.add(event)
        if result is None:
            return
        field_ = "completed" if result["status"] == "completed" else result["status"]
        keys = [detached.result_key, detached.progress_key]
        pipe.eval(RECORD_ONCE, 2, *keys, encode(result), detached.ttl, field_)
        pipe.zrem(DETACHED_SET, detached.origin)
        with self._lock:
            self._detached.pop(event["job"], None)


def outcome(event: dict[str, Any]) -> str:
    """How a job ended, from its terminal event: ``done`` or ``error:<code>``."""
    if event["type"] == "done":
        return "done"
    return f"error:{event.get('code') or 'unknown'}"
