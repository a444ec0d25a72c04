"""Detached jobs (background responses, batch lines) have no front waiting to run them again when
their worker dies, so the workers do it: every few seconds one of them (under a lock) looks at the
detached jobs without a result whose worker's heartbeat is gone or stalled, and enqueues a new
attempt, up to :data:`MAX_ATTEMPTS`; the result is recorded once, whichever attempt ends it.

It also puts back what dead workers held of the bulk queues, and sends a turn for every job in a
lane of its models beyond the turns on their queues (config/lanes.py): a front that died between
queueing a job and sending its turn, a turn lost in a Redis outage, leave no job waiting for
good. A turn too many finds no job and ends at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis

from config.keys import (
    DETACHED_SET,
    bulk_processing,
    cancel_key,
    claim_key,
    detached_key,
    heartbeat_key,
)
from config.lanes import Lanes
from config.protocol import (
    CANCELLED,
    WORKER_ERROR,
    Job,
    decode,
    detached_from_wire,
    encode,
    job_from_wire,
    next_attempt,
)
from config.results import FAILED, JobError, ResultStatus, empty_result
from workers.bulk import requeue

log = logging.getLogger(__name__)

LOCK = "llm:reaper-lock"
MAX_ATTEMPTS = 3


class Reaper:
    def __init__(
        self,
        client: redis.Redis,
        send: Callable[[Job], None],
        worker_id: str,
        interval: float = 5.0,
        models: Sequence[str] = (),
        turn: Callable[[str], None] = lambda model: None,
    ) -> None:
        self.client = client
        self.send = send  # enqueues a job: in its lane, with a turn on its model's queue
        self.worker_id = worker_id
        self.models = models  # the models this worker serves, whose turns it keeps
        self.turn = turn  # sends one turn on a model's queue
        self.lanes = Lanes(client)
        self.interval = interval
        self._next = 0.0

    def check(self) -> None:
        """Called on the heartbeat's thread at every beat; acts every ``interval`` seconds, on
        one worker at a time."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        lock = int(self.interval * 1000)
        if not self.client.set(LOCK, self.worker_id, nx=True, px=lock):
            return
        for member in self.client.zrange(DETACHED_SET, 0, -1):
            origin = member.decode() if isinstance(member, bytes) else str(member)
            try:
                self._check(origin)
            except (redis.RedisError, ValueError, KeyError):
                log.exception("reaper: could not check detached job %s", origin)
        self._restore_bulk()
        self._restore_turns()

    def _restore_turns(self) -> None:
        """Send the turns missing for the jobs waiting in the models' lanes."""
        for model in self.models:
            missing = self.lanes.waiting(model) - self.client.llen(model)
            for _ in range(missing):
                self.turn(model)
            if missing > 0:
                log.warning("sent %d missing turns for %s", missing, model)

    def _restore_bulk(self) -> None:
        """Put the bulk jobs that dead workers held back in their queues (first in line)."""
        prefix = bulk_processing("")
        for key in self.client.scan_iter(f"{prefix}*"):
            key = key.decode() if isinstance(key, bytes) else key
            worker = key[len(prefix) :]
            if self._alive(worker):
                continue
            restored = 0
            while (raw := self.client.lindex(key, -1)) is not None:
                try:
                    requeue(self.client, job_from_wire(decode(raw)), raw)
                except ValueError:  # not a job (MalformedMessage is one): it cannot run again
                    log.error("dropping a malformed bulk job of %s: %.200r", worker, raw)
                else:
                    restored += 1
                self.client.rpop(key)
            if restored:
                log.warning("put back %d bulk jobs of the dead worker %s", restored, worker)

    def _check(self, origin: str) -> None:
        raw = self.client.get(detached_key(origin))
        record = detached_from_wire(raw) if raw else None
        job = record["job"] if record else None
        if record is None or job is None or self.client.exists(job.get("result_key") or ""):
            self.client.zrem(DETACHED_SET, origin)  # done (or forgotten)
            return
        worker = self.client.get(claim_key(job["id"]))
        worker = worker.decode() if isinstance(worker, bytes) else worker
        if self.client.get(cancel_key(origin)) and (worker is None or not self._alive(worker)):
            # Cancelled while queued (a worker drops it when it takes it) or on a dead worker.
            self._record(job, origin, CANCELLED, None)
            return
        if worker is None or self._alive(worker):
            return  # still queued, or running on a live worker
        if record["attempts"] >= MAX_ATTEMPTS:
            log.error("detached job %s: its worker died %d times; giving up", origin, MAX_ATTEMPTS)
            message = f"The model workers running this request died {MAX_ATTEMPTS} times."
            error: JobError = {
                "code": WORKER_ERROR,
                "message": message,
                "field": None,
                "details": {},
            }
            self._record(job, origin, FAILED, error)
        else:
            retry: Job = {**next_attempt(job), "origin": origin}  # the set's name for it
            # Queued before it is recorded: a record never names an attempt that is nowhere.
            self.send(retry)
            self.client.set(
                detached_key(origin),
                encode({"job": retry, "attempts": record["attempts"] + 1}),
                keepttl=True,
            )
            log.warning("detached job %s: its worker %s is gone; running it again", origin, worker)

    def _alive(self, worker: str) -> bool:
        raw = self.client.get(heartbeat_key(worker))
        return raw is not None and not decode(raw).get("stalled")

    def _record(self, job: Job, origin: str, status: ResultStatus, error: JobError | None) -> None:
        result = empty_result(status, error)
        ttl = int(job.get("result_ttl") or 24 * 3600)
        self.client.set(job.get("result_key") or "", encode(result), nx=True, ex=ttl)
        self.client.zrem(DETACHED_SET, origin)
