"""The Redis side of an engine's :class:`JobIO`: one pipelined round trip per engine step."""

from __future__ import annotations

from typing import Any

import redis

from config.protocol import TERMINAL, cancel_key, encode, events_channel, finished_key

FINISHED_TTL = 24 * 3600


class RedisJobIO:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def exchange(self, events: list[dict[str, Any]], job_ids: list[str]) -> set[str]:
        """Publish ``events`` and mark terminal jobs finished; return the cancelled ``job_ids``."""
        if not events and not job_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.publish(events_channel(event["job"]), encode(event))
            if event["type"] in TERMINAL:
                pipe.set(finished_key(event["job"]), outcome(event), ex=FINISHED_TTL)
        if job_ids:
            pipe.mget([cancel_key(job_id) for job_id in job_ids])
        results = pipe.execute()
        if not job_ids:
            return set()
        return {job_id for job_id, flag in zip(job_ids, results[-1], strict=True) if flag}


def outcome(event: dict[str, Any]) -> str:
    """How a job ended, from its terminal event: ``done`` or ``error:<code>``."""
    if event["type"] == "done":
        return "done"
    return f"error:{event.get('code') or 'unknown'}"
