"""The Redis side of an engine's :class:`JobIO`: one pipelined round trip per engine step.

Detached jobs (background responses, batch lines: nobody listens to their events) also have their
result assembled here from the same events, and recorded with their terminal event in the same
round trip, once (``SET NX``): a redelivered attempt cannot record it twice.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import redis

from config.events import DoneEvent, ErrorEvent, Event
from config.keys import DETACHED_SET, cancel_key, events_channel, events_stream, finished_key
from config.protocol import DONE, TERMINAL, TOKEN, encode
from config.results import ResultBuilder
from workers.engine.io import Unavailable

FINISHED_TTL = 24 * 3600
EVENTS_KEPT = 100_000  # a background response's events logged, at most (one a token or so)


# Record a result once, and count it in its batch's progress only if it was recorded.
RECORD_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) and KEYS[2] ~= '' then
    redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return 1
"""


@dataclass
class _Detached:
    job_id: str
    origin: str
    result_key: str
    ttl: int
    progress_key: str = ""
    keep_events: bool = False  # also append its events to its Redis Stream (a resumable run)
    builder: ResultBuilder = field(default_factory=ResultBuilder)


class RedisJobIO:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._detached: dict[str, _Detached] = {}  # job id -> where its result goes
        self._lock = threading.Lock()  # task threads register, the engine's thread reads
        self._outage = False  # the last round trip failed: Redis went away

    def detach(
        self,
        job_id: str,
        origin: str,
        result_key: str,
        ttl: int,
        progress_key: str = "",
        keep_events: bool = False,
    ) -> None:
        """Record the result of ``job_id`` under ``result_key`` when it ends (and count it in
        ``progress_key``); with ``keep_events``, log its events in its Redis Stream too."""
        with self._lock:
            self._detached[job_id] = _Detached(
                job_id, origin, result_key, ttl, progress_key, keep_events
            )

    def exchange(self, events: list[Event], job_ids: list[str]) -> set[str]:
        """Publish ``events`` and mark terminal jobs finished (recording detached jobs' results);
        return the cancelled ``job_ids``. Raises :class:`Unavailable` if Redis cannot be reached,
        having changed nothing: the engine sends the same again later."""
        if not events and not job_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        fed: dict[str, list[Event]] = {}  # detached job -> its events in this round
        for event in events:
            pipe.publish(events_channel(event["job"]), encode(event))
            if event["type"] != TOKEN:
                pipe.set(finished_key(event["job"]), outcome(event), ex=FINISHED_TTL)
            self._record(pipe, event, fed)
        if job_ids:
            pipe.mget([cancel_key(job_id) for job_id in job_ids])
        try:
            results = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._outage = True
            raise Unavailable(str(exc)) from exc
        self._commit(fed)
        if not job_ids:
            return set()
        cancelled = {job_id for job_id, flag in zip(job_ids, results[-1], strict=True) if flag}
        if self._outage:  # the fronts that waited may have given up on their jobs meanwhile
            self._outage = False
            cancelled |= self._unheard(job_ids)
        return cancelled

    def _unheard(self, job_ids: list[str]) -> set[str]:
        """The jobs (not detached ones) whose events nobody listens to any more."""
        with self._lock:
            heard = [j for j in job_ids if j not in self._detached]
        if not heard:
            return set()
        counts = self.client.pubsub_numsub(*[events_channel(j) for j in heard])
        return {job_id for job_id, (_, n) in zip(heard, counts, strict=True) if not n}

    def _record(self, pipe: Any, event: Event, fed: dict[str, list[Event]]) -> None:
        """Note a detached job's event; once it ends, queue its result's recording (in the same
        round trip as its terminal event)."""
        with self._lock:
            detached = self._detached.get(event["job"])
        if detached is None:
            return
        fed.setdefault(event["job"], []).append(event)
        if detached.keep_events:
            key = events_stream(event["job"])
            pipe.xadd(key, {"event": encode(event)}, maxlen=EVENTS_KEPT, approximate=True)
            if event["seq"] == 0 or event["type"] in TERMINAL:
                pipe.expire(key, detached.ttl)
        if event["type"] not in TERMINAL:
            return
        preview = copy.deepcopy(detached.builder)  # committed only if the round trip succeeds
        for earlier in fed[event["job"]]:
            preview.add(earlier)
        result = preview.result
        if result is None:  # cannot be: a terminal event sets it
            raise AssertionError(f"no result after the terminal event of {event['job']}")
        field_ = result["status"]  # the batch progress's count: completed, failed, cancelled
        keys = [detached.result_key, detached.progress_key]
        pipe.eval(RECORD_ONCE, 2, *keys, encode(result), detached.ttl, field_)
        pipe.zrem(DETACHED_SET, detached.origin)

    def _commit(self, fed: dict[str, list[Event]]) -> None:
        with self._lock:
            for job_id, events in fed.items():
                detached = self._detached.get(job_id)
                if detached is None:
                    continue
                for event in events:
                    detached.builder.add(event)
                if detached.builder.result is not None:
                    del self._detached[job_id]


def outcome(event: DoneEvent | ErrorEvent) -> str:
    """How a job ended, from its terminal event: ``done`` or ``error:<code>``."""
    if event["type"] == DONE:
        return DONE
    return f"error:{event['code'] or 'unknown'}"
