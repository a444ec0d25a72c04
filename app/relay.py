"""Reading a job's events back: up to its terminal one, watching for a silent or dead worker and
for a client that left."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import redis

from app.errors import JOB_PARAMS, APIError, from_worker
from app.events import JobEvents
from app.liveness import Liveness
from config.events import Event, EventGap
from config.keys import claim_key
from config.protocol import ERROR, TERMINAL

if TYPE_CHECKING:  # the metrics read the service's state: no import at run time
    from app.metrics import Metrics

log = logging.getLogger(__name__)

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


class EventRelay:
    """Follows a job's events for :class:`app.jobs.JobService`, which gives it its Redis client,
    liveness, metrics and timeouts, and its ways to cancel a job and to report Redis down
    (``unavailable``: the job service's ``queue_unavailable``, kept there for its other users)."""

    def __init__(
        self,
        client: redis.Redis,
        liveness: Liveness,
        timeout: float,
        queue_timeout: float,
        cancel: Callable[[str], None],
        unavailable: Callable[[Exception], APIError],
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.liveness = liveness
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.cancel = cancel
        self.unavailable = unavailable
        self.metrics = metrics  # counts time to first token and tokens, per job

    def iterate(
        self,
        events: JobEvents,
        gone: ClientCheck | None = None,
        cancel: bool = True,
        names: dict[str, str] = JOB_PARAMS,
        queue_timeout: float | None = None,
    ) -> Iterator[Event]:
        """Yield a job's events up to and including the terminal one.

        An ``error`` event is raised as :class:`APIError` (its field named as ``names`` say);
        a worker silent for the timeout, or a
        queue that kept the job for the queue timeout, is a 504; a worker that died or stalled
        with the job is :class:`WorkerLost`; a client that left (``gone``, checked every
        :data:`GONE_INTERVAL`) is :class:`ClientGone`. A job that ends here without its terminal
        event is cancelled, so a copy of it still in the queue or on a frozen worker stops too
        (unless ``cancel`` is false: a background run outlives its stream). ``queue_timeout``:
        this job's, not the setting's (a quick job's is seconds).
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
                        self._check_silence(events, submitted, last_heard, queue_timeout)
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

    def _check_silence(
        self,
        events: JobEvents,
        submitted: float,
        last_heard: float,
        queue_timeout: float | None = None,
    ) -> None:
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
            raise self.unavailable(exc) from exc
        if not alive:
            log.warning("job %s: its worker %s is gone", events.job_id, worker)
            raise WorkerLost()
        now = time.monotonic()
        if worker is None:
            waited = self.queue_timeout if queue_timeout is None else queue_timeout
            if now - submitted >= waited:
                raise APIError(
                    504,
                    f"The request waited {waited:g} seconds in the queue of "
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
