"""What one worker process holds: its engines (one per model it serves) and its heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from config.events import EventSequence, Usage
from config.keys import cancel_key, claim_key, events_channel, finished_key
from config.lanes import CLAIM_TTL, Lanes, Turn, share
from config.protocol import (
    CANCELLED,
    DONE,
    DUPLICATE,
    ERROR,
    QUICK_KINDS,
    WORKER_ERROR,
    Job,
    MalformedMessage,
    decode,
    job_from_wire,
    origin,
)
from config.redisconn import connect
from config.registry import load_registry
from config.settings import Settings
from config.tracing import engine_spans, job_span
from workers.adapters import AdapterControl, ServedModels
from workers.bulk import BulkFeeder
from workers.engine import JobFailed
from workers.engine.base import Engine
from workers.engine.io import Ticket
from workers.heartbeat import Heartbeat
from workers.io import RedisJobIO
from workers.loading import load_engines
from workers.quick import QuickFeeder
from workers.reaper import Reaper
from workers.watchdog import Watchdog

log = logging.getLogger(__name__)

NOTHING_USED: Usage = {"prompt_tokens": 0, "total_tokens": 0}  # a quick job's: no model ran
IDLE = "idle"  # a turn that found no job (another turn ran the one it was sent for)
REDIS_PATIENCE = 600.0  # seconds a turn waits for Redis to come back to take its job


class WorkerRuntime:
    """Loads the models of the queues a worker consumes, runs their jobs, announces itself."""

    def __init__(self) -> None:
        self.engines = ServedModels()  # model name -> engine (adapters come and go)
        self.adapters: AdapterControl | None = None
        self.heartbeat: Heartbeat | None = None
        self.bulk: BulkFeeder | None = None
        self.quick: QuickFeeder | None = None
        self.io: RedisJobIO | None = None
        self.lanes: Lanes | None = None
        self.settings: Settings | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"

    def load(self, queues: list[str], settings: Settings) -> None:
        """Load the registry entry named by each queue (once per process)."""
        registry = load_registry(settings.models_file)
        models = [q for q in queues if q in registry]
        unknown = sorted(set(queues) - set(models))
        if not models:
            raise SystemExit(
                f"this worker consumes no model queue (queues: {queues}); start it with "
                f"-Q <model>, one of: {', '.join(sorted(registry))}"
            )
        if unknown:
            log.warning("queues without a registry entry are ignored: %s", ", ".join(unknown))
        self.settings = settings
        self.io = RedisJobIO(
            connect(settings.redis_url, settings.redis_sentinel_master, client_name="llm-worker")
        )
        self.lanes = Lanes(self.io.client)
        specs = [registry[name] for name in models if name not in self.engines]
        loaded = load_engines(specs, registry, self.io, settings)
        self.engines.update(loaded)
        for engine in {id(e): e for e in loaded.values()}.values():
            engine.start()
        # The adapters loaded at run time so far, before Celery hands it a job that names one.
        self.adapters = AdapterControl(self.io.client, self.engines)
        try:
            self.adapters.sync()
        except redis.RedisError as exc:
            log.warning("could not read the adapters loaded at run time (%s); later", exc)

    def slots(self) -> int:
        """How many jobs the worker should hold at once: the sum of its engines' batch sizes."""
        return sum(e.slots() for e in self._distinct())

    def _distinct(self) -> list[Engine]:
        """Each engine once (the LoRA adapters of one base share theirs)."""
        return list({id(e): e for e in self.engines.values()}.values())

    def announce(
        self, hostname: str | None = None, turn: Callable[[str], None] | None = None
    ) -> None:
        """Start the heartbeat (with the stall watchdog and the reaper, which sends turns on
        the models' queues with ``turn``)."""
        self.worker_id = worker_id = f"{hostname or socket.gethostname()}:{os.getpid()}"
        client, settings = self._io().client, self._settings()
        self.heartbeat = heartbeat = Heartbeat(
            client,
            worker_id,
            sorted(self.engines),
            lambda: {name: engine.load() | engine.info for name, engine in self.engines.items()},
            settings.heartbeat_interval,
            settings.heartbeat_ttl,
        )
        watchdog = Watchdog(self.engines, settings.engine_stall_timeout, heartbeat)

        def served_changed() -> None:  # an adapter loaded or unloaded: say so at once
            heartbeat.models = sorted(self.engines)
            heartbeat.beat()

        turn = turn or (lambda model: None)

        def send(job: Job) -> None:  # a detached job's new attempt: in its lane, with a turn
            job.setdefault("share", share(job, "", 1.0))  # one recorded before shares were
            queue = job.get("queue") or job["model"]
            self._lanes().push(queue, job)
            turn(queue)

        reaper = Reaper(client, send, worker_id, models=sorted(self.engines), turn=turn)

        def before_beat() -> None:
            watchdog.check()
            reaper.check()

        heartbeat.before_beat = before_beat
        heartbeat.start()
        self.bulk = BulkFeeder(client, self.engines, worker_id, self.run)
        self.bulk.start()
        self.quick = QuickFeeder(client, sorted(self.engines), self.run)
        self.quick.start()
        if self.adapters is not None:
            self.adapters.start(worker_id, served_changed)
        log.info("worker %s ready: serving %s", worker_id, ", ".join(sorted(self.engines)))

    def drain(self, timeout: float) -> None:
        """Warm shutdown began: say so in the heartbeat (the front routes no new request here)
        and give the running sequences ``timeout`` seconds before failing what is left."""
        if self.bulk:  # no more batch lines: what it holds finishes, the rest waits in Redis
            self.bulk.stop()
        if self.quick:
            self.quick.stop()
        if self.heartbeat:
            self.heartbeat.draining = True
            self.heartbeat.beat()
        log.info("draining: finishing running jobs for up to %.0f s", timeout)

        def give_up() -> None:
            for engine in self._distinct():
                engine.abort("The model worker shut down before finishing this request.")

        timer = threading.Timer(timeout, give_up)
        timer.daemon = True
        timer.start()

    def shutdown(self) -> None:
        if self.adapters:
            self.adapters.stop()
        if self.heartbeat:
            self.heartbeat.stop()
        for engine in self._distinct():
            engine.stop()

    def take(self, model: str) -> str:
        """A turn on ``model``'s queue: run the job its lanes give this turn by fair share, then
        settle what its key was charged with the tokens it was served (config/lanes.py). A job
        dropped unrun (its request had ended) does not use the turn up: the turn was sent for
        another job, which it takes next."""
        while (turn := self._take(model)) is not None:
            served = 0
            try:
                try:
                    message: object = decode(turn.raw)
                except ValueError:  # not JSON: run_counted fails it as malformed
                    message = turn.raw
                outcome, served = self.run_counted(message)
            finally:
                try:
                    self._lanes().settle(model, turn, served)
                except redis.RedisError as exc:
                    log.warning("could not settle a job's share of %s: %s", model, exc)
            if outcome not in (DUPLICATE, CANCELLED) or served:
                return outcome
        return IDLE

    def _take(self, model: str) -> Turn | None:
        """The next job of ``model``'s lanes, waiting for Redis while it is away: its job is
        still in its lane, and this turn may be the only one left to run it."""
        deadline = time.monotonic() + REDIS_PATIENCE
        while True:
            try:
                return self._lanes().take(model, self.worker_id)
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("cannot take a job of %s (%s); waiting for Redis", model, exc)
                time.sleep(1)

    def run(self, message: object) -> str:
        """:meth:`run_counted`'s outcome alone."""
        return self.run_counted(message)[0]

    def run_counted(self, message: object) -> tuple[str, int]:
        """Run one job to its end on its model's engine; return how it ended.

        A job whose request already got its answer (a redelivered copy, or an attempt the front
        retried elsewhere), that was cancelled before it started, or whose events nobody listens
        to any more is dropped, so no request runs to completion twice and none runs for nobody.
        Whatever fails before the job reaches its engine ends it at once with one ``error``
        event: the request's fault (bad text, a refused template) as :class:`InvalidRequest`,
        anything else as the worker's own. Returns how it ended and the tokens it was served.
        """
        try:
            job = job_from_wire(message)
        except MalformedMessage as exc:
            log.error("dropping a malformed job: %s", exc)
            job_id = message.get("id") if isinstance(message, dict) else None
            if isinstance(job_id, str):  # its front waits: it hears why at once
                return self._fail(job_id, WORKER_ERROR, "The model worker got a malformed job."), 0
            return ERROR, 0
        trace = job.get("trace")
        created = job.get("created") or time.time()  # a job a test (or an old front) made
        with job_span(job["id"], job["model"], job["kind"], trace, created) as span:
            outcome, ticket = self._run(job)
            engine_spans(span, ticket.marks if ticket else {})
            return outcome, ticket.tokens if ticket else 0

    def _run(self, job: Job) -> tuple[str, Ticket | None]:
        """:meth:`run` for a checked job: how it ended, and its ticket if it reached its engine
        (when its phases began, the tokens it was served)."""
        job_id = job["id"]
        io = self._io()
        client = io.client
        detached = bool(job.get("result_key"))
        pipe = client.pipeline(transaction=False)
        pipe.mget(finished_key(origin(job)), cancel_key(job_id), cancel_key(origin(job)))
        pipe.pubsub_numsub(events_channel(job_id))
        if detached:
            pipe.exists(job["result_key"])
        finished, cancelled, origin_cancelled = (replies := pipe.execute())[0]
        listeners = replies[1][0][1]
        finished = finished or (detached and replies[2])
        # A detached job is cancelled through its first attempt's id, whichever attempt runs. (A
        # request the front runs again has its lost attempt cancelled: not so its retries.)
        cancelled = cancelled or (detached and origin_cancelled)
        # The front subscribes to a job's events before it enqueues the job: nobody listening
        # means its request has already ended (a copy restored after an outage, say). A detached
        # job has nobody listening by design; its recorded result says whether it already ran.
        if finished or cancelled or not (listeners or detached):
            why = "already answered" if finished else "cancelled" if cancelled else "unheard"
            log.info("job %s %s; dropping this copy", job_id, why)
            client.delete(claim_key(job_id))  # taking it from its lane claimed it: it never ran
            return (DUPLICATE if finished else CANCELLED), None
        if detached:
            ttl = int(job.get("result_ttl") or CLAIM_TTL)
            progress = job.get("progress_key") or ""
            keep = bool(job.get("keep_events"))
            io.detach(job_id, origin(job), job["result_key"], ttl, progress, keep)
        client.set(claim_key(job_id), self.worker_id, ex=CLAIM_TTL)
        try:
            engine = self.engines.get(job["model"])
            if engine is None:
                raise JobFailed(f"This worker does not serve the model {job['model']!r}.")
            if job["kind"] in QUICK_KINDS:  # answered now, by the tokenizer: no engine step
                answer = engine.tokenize(job)
                done = EventSequence(job_id).done(NOTHING_USED, tokenized=answer)
                self._io().exchange([done], [])
                return DONE, None
            ticket = engine.submit(job)
        except JobFailed as exc:
            if exc.code == WORKER_ERROR:
                log.error("job %s: %s", job_id, exc.message)
            return self._fail(job_id, exc.code, exc.message, exc.field, exc.details), None
        except Exception:  # noqa: BLE001 - any fault ends the job now, not after a timeout
            log.exception("job %s: the worker failed before running it", job_id)
            message = "The model worker failed while preparing this request."
            return self._fail(job_id, WORKER_ERROR, message), None
        ticket.wait()
        outcome = ticket.outcome or ERROR
        if job.get("origin"):  # a retried attempt answers its origin's request
            client.set(finished_key(origin(job)), outcome, ex=CLAIM_TTL)
        return outcome, ticket

    def _lanes(self) -> Lanes:
        if self.lanes is None:
            raise RuntimeError("the worker's models are not loaded yet")
        return self.lanes

    def _io(self) -> RedisJobIO:
        if self.io is None:
            raise RuntimeError("the worker's models are not loaded yet")
        return self.io

    def _settings(self) -> Settings:
        if self.settings is None:
            raise RuntimeError("the worker's models are not loaded yet")
        return self.settings

    def _fail(
        self,
        job_id: str,
        code: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """End a job that never reached its engine with its one terminal ``error`` event."""
        self._io().exchange([EventSequence(job_id).error(code, message, field, details)], [])
        return ERROR


runtime = WorkerRuntime()
