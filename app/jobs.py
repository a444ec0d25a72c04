"""Turning a validated request into a job on its model's queue (app/relay.py reads its events
back)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import redis
from celery import Celery

from app.errors import JOB_PARAMS, APIError
from app.events import EventHub, JobEvents
from app.liveness import Liveness
from app.relay import ClientCheck, EventRelay, WorkerLost
from config.events import Event
from config.keys import DETACHED_SET, cancel_key, detached_key, flex_queue, quick_queue
from config.lanes import Lanes, share
from config.protocol import BULK, TURN_TASK, Job, encode, next_attempt
from config.registry import CHAT, EMBEDDING, ModelSpec, public_names

if TYPE_CHECKING:  # the metrics read the service's state: no import at run time
    from app.metrics import Metrics

log = logging.getLogger(__name__)

CANCEL_TTL = 3600
QUICK_WAIT = 5.0  # seconds a quick job may wait for a worker before it is sent again
PUBLISHERS = 8  # concurrent send_task calls, under kombu's 10 connections per channel


def no_keys() -> tuple[str, float]:
    """Every request's key and weight with API keys off: one lane, first come first served."""
    return "", 1.0


def _chain(first: Event, rest: Iterator[Event]) -> Iterator[Event]:
    yield first
    yield from rest


class JobService:
    def __init__(
        self,
        celery: Celery,
        client: redis.Redis,
        hub: EventHub,
        registry: dict[str, ModelSpec],
        timeout: float,
        retries: int = 1,
        max_queued: int = 256,
        queue_timeout: float = 600.0,
        metrics: Metrics | None = None,
        key_of: Callable[[], tuple[str, float]] = no_keys,
        more_models: Callable[[str], ModelSpec | None] = lambda name: None,
    ) -> None:
        self.celery = celery
        self.lanes = Lanes(client)
        self.key_of = key_of  # the current request's key (its owner hash) and weight
        self._publishing = threading.BoundedSemaphore(PUBLISHERS)
        self.retries = retries
        self.max_queued = max_queued
        self.client = client
        self.registry = registry  # model name -> entry (the name is its queue's)
        self.names = public_names(registry)  # every name clients may use, aliases included
        self.more_models = more_models  # names beyond the registry: adapters loaded at run time
        self.hub = hub
        self.liveness = Liveness(client)
        # Reads each job's events back, cancelling the job if it ends there unfinished.
        self.relay = EventRelay(
            client, self.liveness, timeout, queue_timeout, self.cancel, queue_unavailable, metrics
        )

    def resolve(self, name: str, kind: str | None, live: bool = True) -> ModelSpec:
        """The entry for ``name``: 404 if unknown, 400 if not of ``kind`` (None: any), 503 if
        no live worker (unless not ``live``: work that may wait for one)."""
        spec = self.names.get(name) or self.more_models(name)
        if spec is None:
            raise APIError(404, f"The model `{name}` does not exist.", "model", "model_not_found")
        if kind is not None and not spec.serves(kind):
            what = {CHAT: "chat and completions", EMBEDDING: "embeddings"}.get(
                kind, "rerank and score"
            )
            raise APIError(
                400, f"The model `{name}` does not support {what}.", "model", "model_not_supported"
            )
        if not live:
            return spec
        try:
            live = self.liveness.is_live(spec.name)
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        if not live:
            raise APIError(
                503,
                f"No worker is serving the model `{name}` right now; try again later.",
                "model",
                "model_not_available",
                "service_unavailable_error",
            )
        return spec

    def submit(self, spec: ModelSpec, job: Job) -> JobEvents:
        """Subscribe to the job's events, then enqueue it on the model's queue (429 if full)."""
        self._check_queue(spec)
        return self._listen(job, lambda: self._send(spec, job))

    def _listen(self, job: Job, enqueue: Callable[[], None]) -> JobEvents:
        """Subscribe to the job's events, then ``enqueue`` it (raising :class:`APIError`): in
        that order, as pub/sub keeps nothing for a late subscriber."""
        try:
            events = self.hub.open(job["id"])
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        try:
            enqueue()
        except APIError:
            events.close()
            raise
        events.model = job["model"]
        return events

    def _push_quick(self, spec: ModelSpec, job: Job) -> None:
        try:
            self.client.lpush(quick_queue(spec.queue), encode(job))
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc

    def _send(self, spec: ModelSpec, job: Job) -> None:
        log.info("job %s: %s for %s (user %s)", job["id"], job["kind"], spec.name, job.get("user"))
        if spec.queue != spec.name:
            job["queue"] = spec.queue  # a retry by the workers queues it there too
        try:
            if job.get("priority") == BULK and not job.get("batch"):
                # Flex: taken by the workers' bulk feeders (workers/bulk.py), into room that
                # interactive work leaves; not a Celery task holding a worker slot.
                self.client.lpush(flex_queue(spec.name), encode(job))
                return
            entry = self.lanes.push(spec.queue, self._shared(job))
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        try:
            # The job waits in its key's lane; the turn on the model's queue runs whichever job
            # is fairest when a worker takes it (config/lanes.py). kombu's Redis channel allows
            # 10 connections and fails past them ("Too many connections"); publishing takes a
            # millisecond, so excess publishers just wait.
            with self._publishing:
                self.celery.send_task(TURN_TASK, args=[spec.queue], queue=spec.queue)
        except Exception as exc:
            try:
                self.lanes.withdraw(spec.queue, job, entry)
            except redis.RedisError:
                pass  # still there: a worker drops it when it takes it (nobody listens)
            # Taken already by another job's turn, or left there: the workers' reaper sends a
            # turn for every job in a lane that has none (workers/reaper.py).
            raise queue_unavailable(exc) from exc

    def ask(
        self,
        spec: ModelSpec,
        job: Job,
        gone: ClientCheck | None = None,
        names: dict[str, str] = JOB_PARAMS,
    ) -> list[Event]:
        """Run a quick job (tokenize, detokenize): on the model's quick list, which a worker
        answers at once outside its engine (workers/quick.py); all its events. A quick job no
        worker took within :data:`QUICK_WAIT` seconds, or whose worker died, is sent once more
        (it changes nothing: running it twice is harmless)."""
        self._check_queue(spec, quick_queue(spec.queue))
        for attempt in range(2):
            events = self._listen(job, functools.partial(self._push_quick, spec, job))
            try:
                return list(self.relay.iterate(events, gone, names=names, queue_timeout=QUICK_WAIT))
            except WorkerLost:
                pass
            except APIError as exc:
                if attempt or exc.body["error"]["code"] != "queue_timeout":
                    raise
            log.warning("quick job %s: no answer; sending it again", job["id"])
            job = next_attempt(job)
        raise APIError(
            503,
            f"No worker of the model `{spec.name}` answered.",
            "model",
            "worker_lost",
            "service_unavailable_error",
        )

    def submit_detached(self, spec: ModelSpec, job: Job, listen: bool = False) -> JobEvents | None:
        """Enqueue a detached job (its ``result_key`` set: the worker records its result, and
        the workers run it again if its worker dies), registered so that they can. ``listen``:
        also subscribe to its events, as for a streamed background response."""
        try:
            record = {"job": self._shared(job), "attempts": 1}  # a retry keeps its share
            pipe = self.client.pipeline(transaction=False)
            pipe.set(detached_key(job["id"]), encode(record), ex=job.get("result_ttl") or None)
            pipe.zadd(DETACHED_SET, {job["id"]: job["created"]})
            pipe.execute()
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        if listen:
            return self.submit(spec, job)
        self._check_queue(spec)
        self._send(spec, job)
        return None

    def collect(
        self,
        spec: ModelSpec,
        job: Job,
        gone: ClientCheck | None = None,
        names: dict[str, str] = JOB_PARAMS,
    ) -> list[Event]:
        """Run a job and return all its events; if its worker dies, run it again elsewhere.
        ``gone`` tells whether the client has left (then the job is cancelled, see
        :meth:`app.relay.EventRelay.iterate`); ``names``: the endpoint's names for the job's
        fields, in errors."""
        for _ in range(self.retries):
            events = self.submit(spec, job)
            try:
                return list(self.relay.iterate(events, gone, names=names))
            except WorkerLost:
                log.warning("job %s: worker lost; running it again", events.job_id)
                job = next_attempt(job)
        return list(self.relay.iterate(self.submit(spec, job), gone, names=names))

    def start(
        self,
        spec: ModelSpec,
        job: Job,
        gone: ClientCheck | None = None,
        names: dict[str, str] = JOB_PARAMS,
    ) -> tuple[str, Iterator[Event]]:
        """Run a job until its first event (retrying if its worker dies before sending one);
        return the job id and an iterator over all its events."""
        for attempt in range(self.retries + 1):
            events = self.submit(spec, job)
            iterator = self.relay.iterate(events, gone, names=names)
            try:
                first = next(iterator)
            except WorkerLost:
                if attempt == self.retries:
                    raise
                log.warning("job %s: worker lost before its first event; retrying", events.job_id)
                job = next_attempt(job)
                continue
            return events.job_id, _chain(first, iterator)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _shared(self, job: Job) -> Job:
        """``job`` with its share of its model (config/lanes.py): the current request's key and
        weight, unless it has one (a retry keeps its first attempt's)."""
        if "share" not in job:
            job["share"] = share(job, *self.key_of())
        return job

    def _check_queue(self, spec: ModelSpec, queue: str | None = None) -> None:
        """Backpressure: refuse a job when its model's queue (or ``queue``, its quick list)
        already holds its cap of them, unless the request's key holds less than its part of the
        cap (the cap over the keys waiting, this one counted): one key's flood never locks the
        other keys out (the quick list has one line for all)."""
        cap = spec.max_queued if spec.max_queued is not None else self.max_queued
        try:
            # Celery's Redis transport: one list per queue.
            depth = self.client.llen(queue or spec.queue)
            if depth < cap:
                return
            if queue is not None:
                mine, keys = depth, 1
            else:
                mine, keys = self.lanes.backlog(spec.queue, self.key_of()[0])
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        if mine < cap / (keys + (0 if mine else 1)):
            return
        yours = f" ({mine} of them this API key's)" if queue is None else ""
        raise APIError(
            429,
            f"The model `{spec.name}` has {depth} requests waiting{yours}; try again shortly.",
            code="queue_full",
            headers={"Retry-After": "1"},
        )

    def cancel(self, job_id: str) -> None:
        try:
            self.client.set(cancel_key(job_id), 1, ex=CANCEL_TTL)
        except redis.RedisError:
            log.warning("could not cancel job %s", job_id)


def queue_unavailable(exc: Exception) -> APIError:
    log.error("Redis unavailable: %s", exc)
    return APIError(
        503,
        "The job queue is unavailable; try again later.",
        code="queue_unavailable",
        type_="service_unavailable_error",
    )
