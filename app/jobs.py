"""Turning a validated request into a job on its model's queue, and reading its events back."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import redis
from celery import Celery

from app.errors import JOB_PARAMS, APIError, from_worker
from app.events import EventHub, JobEvents
from app.liveness import Liveness
from config.events import Event, EventGap
from config.keys import DETACHED_SET, cancel_key, claim_key, detached_key, flex_queue
from config.protocol import (
    BULK,
    EMBED_TASK,
    EMBEDDING,
    ERROR,
    GENERATE_TASK,
    TERMINAL,
    Job,
    encode,
    next_attempt,
)
from config.registry import CHAT, ModelSpec, public_names

if TYPE_CHECKING:  # the metrics read the service's state: no import at run time
    from app.metrics import Metrics

log = logging.getLogger(__name__)

CANCEL_TTL = 3600
PUBLISHERS = 8  # concurrent send_task calls, under kombu's 10 connections per channel
WATCH_INTERVAL = 1.0  # seconds of silence after which the job's worker is checked
GONE_INTERVAL = 0.5  # seconds between checks that the client is still connected

ClientCheck = Callable[[], bool]  # True once the request's client has closed its connection


class ClientGone(APIError):
    """The client closed its connection before its answer was ready: its job is cancelled."""

    def __init__(self) -> None:
        super().__init__(499, "The client closed the connection.", code="client_closed_request")


class WorkerLost(APIError):
    """The worker running a job died (its heartbeat lapsed) before the job ended."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "The model worker running this request stopped before finishing it.",
            code="worker_lost",
            type_="server_error",
        )


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
    ) -> None:
        self.celery = celery
        self._publishing = threading.BoundedSemaphore(PUBLISHERS)
        self.metrics = metrics  # counts time to first token and tokens, per job
        self.retries = retries
        self.max_queued = max_queued
        self.client = client
        self.registry = registry  # model name -> entry (the name is its queue's)
        self.names = public_names(registry)  # every name clients may use, aliases included
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.hub = hub
        self.liveness = Liveness(client)

    def resolve(self, name: str, kind: str, live: bool = True) -> ModelSpec:
        """The entry for ``name``: 404 if unknown, 400 if the wrong kind, 503 if no live worker
        (unless not ``live``: work that may wait for one)."""
        spec = self.names.get(name)
        if spec is None:
            raise APIError(404, f"The model `{name}` does not exist.", "model", "model_not_found")
        if not spec.serves(kind):
            what = "chat and completions" if kind == CHAT else "embeddings"
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
        try:
            events = self.hub.open(job["id"])  # before the enqueue: pub/sub keeps nothing
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        try:
            self._send(spec, job)
        except APIError:
            events.close()
            raise
        events.model = job["model"]
        return events

    def _send(self, spec: ModelSpec, job: Job) -> None:
        log.info("job %s: %s for %s (user %s)", job["id"], job["kind"], spec.name, job.get("user"))
        task = EMBED_TASK if job["kind"] == EMBEDDING else GENERATE_TASK
        try:
            if job.get("priority") == BULK and not job.get("batch"):
                # Flex: taken by the workers' bulk feeders (workers/bulk.py), into room that
                # interactive work leaves; not a Celery task holding a worker slot.
                self.client.lpush(flex_queue(spec.name), encode(job))
                return
            # kombu's Redis channel allows 10 connections and fails past them ("Too many
            # connections"); publishing takes a millisecond, so excess publishers just wait.
            with self._publishing:
                self.celery.send_task(task, args=[job], queue=spec.name)
        except Exception as exc:
            raise queue_unavailable(exc) from exc

    def submit_detached(self, spec: ModelSpec, job: Job, listen: bool = False) -> JobEvents | None:
        """Enqueue a detached job (its ``result_key`` set: the worker records its result, and
        the workers run it again if its worker dies), registered so that they can. ``listen``:
        also subscribe to its events, as for a streamed background response."""
        record = {"job": job, "attempts": 1}
        try:
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
        :meth:`iterate`); ``names``: the endpoint's names for the job's fields, in errors."""
        for _ in range(self.retries):
            events = self.submit(spec, job)
            try:
                return list(self.iterate(events, gone, names=names))
            except WorkerLost:
                log.warning("job %s: worker lost; running it again", events.job_id)
                job = next_attempt(job)
        return list(self.iterate(self.submit(spec, job), gone, names=names))

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
            iterator = self.iterate(events, gone, names=names)
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

    def iterate(
        self,
        events: JobEvents,
        gone: ClientCheck | None = None,
        cancel: bool = True,
        names: dict[str, str] = JOB_PARAMS,
    ) -> Iterator[Event]:
        """Yield a job's events up to and including the terminal one.

        An ``error`` event is raised as :class:`APIError` (its field named as ``names`` say);
        a worker silent for the timeout, or a
        queue that kept the job for the queue timeout, is a 504; a worker that died or stalled
        with the job is :class:`WorkerLost`; a client that left (``gone``, checked every
        :data:`GONE_INTERVAL`) is :class:`ClientGone`. A job that ends here without its terminal
        event is cancelled, so a copy of it still in the queue or on a frozen worker stops too
        (unless ``cancel`` is false: a background run outlives its stream).
        """
        finished = False
        submitted = last_heard = silence_checked = gone_checked = time.monotonic()
        wait = GONE_INTERVAL if gone is not None else WATCH_INTERVAL
        watch = self.metrics.watch(events.model) if self.metrics else None
        try:
            while True:
                now = time.monotonic()
                if gone is not None and now - gone_checked >= GONE_INTERVAL:
                    gone_checked = now
                    if gone():
                        log.info("job %s: the client left; cancelling it", events.job_id)
                        raise ClientGone()
                try:
                    event = events.next(wait)
                except queue.Empty:
                    now = time.monotonic()
                    if now - max(last_heard, silence_checked) >= WATCH_INTERVAL:
                        silence_checked = now
                        self._check_silence(events, submitted, last_heard)
                    continue
                except EventGap as exc:
                    log.error("job %s: %s", events.job_id, exc)
                    raise APIError(502, "Events from the model worker were lost.") from None
                last_heard = time.monotonic()
                if watch is not None:
                    watch.event(event)
                if event["type"] in TERMINAL:
                    finished = True
                    if event["type"] == ERROR:
                        raise from_worker(event, names)
                yield event
                if finished:
                    return
        except APIError as exc:
            if watch is not None:
                watch.failed(exc.body["error"]["code"])
            raise
        finally:
            events.close()
            if not finished and cancel:
                self.cancel(events.job_id)

    def _check_queue(self, spec: ModelSpec) -> None:
        """Backpressure: refuse a job when its model's queue already holds its cap of them."""
        cap = spec.max_queued if spec.max_queued is not None else self.max_queued
        try:
            depth = self.client.llen(spec.name)  # Celery's Redis transport: one list per queue
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        if depth >= cap:
            raise APIError(
                429,
                f"The model `{spec.name}` has {depth} requests waiting; try again shortly.",
                code="queue_full",
                headers={"Retry-After": "1"},
            )

    def _check_silence(self, events: JobEvents, submitted: float, last_heard: float) -> None:
        """A job has been silent for a while: raise if it never will speak.

        :class:`WorkerLost` if its worker (or, while it is queued, every worker of its model) is
        gone; 504 if a worker holds it but sent nothing for the timeout, or if it waited in the
        queue for the queue timeout. Time in the queue does not count against the worker
        timeout: under load a job may wait longer than a worker may stay silent.
        """
        try:
            worker = self.client.get(claim_key(events.job_id))
            if worker is not None:  # a worker whose engine stalled is as good as gone
                name = worker.decode() if isinstance(worker, bytes) else str(worker)
                alive = self.liveness.worker_live(name)
            else:  # still queued: it can wait as long as some worker of its model lives
                alive = self.liveness.is_live(events.model)
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        if not alive:
            log.warning("job %s: its worker %s is gone", events.job_id, worker)
            raise WorkerLost()
        now = time.monotonic()
        if worker is None:
            if now - submitted >= self.queue_timeout:
                raise APIError(
                    504,
                    f"The request waited {self.queue_timeout:g} seconds in the queue of "
                    f"`{events.model}` without a worker taking it.",
                    code="queue_timeout",
                    type_="timeout_error",
                )
            return
        if events.claimed_at is None:
            events.claimed_at = now
        if now - max(last_heard, events.claimed_at) >= self.timeout:
            raise APIError(
                504,
                f"The model worker sent nothing for {self.timeout:g} seconds.",
                code="worker_timeout",
                type_="timeout_error",
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
