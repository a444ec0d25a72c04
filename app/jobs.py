"""Turning a validated request into a job on its model's queue, and reading its events back."""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
from celery import Celery

from app.errors import APIError
from app.events import EventHub, JobEvents
from app.liveness import Liveness
from config.protocol import EMBED_TASK, ERROR, GENERATE_TASK, TERMINAL, EventGap, cancel_key
from config.registry import CHAT, ModelSpec

log = logging.getLogger(__name__)

CANCEL_TTL = 3600


class JobService:
    def __init__(
        self,
        celery: Celery,
        client: redis.Redis,
        registry: dict[str, ModelSpec],
        timeout: float,
    ) -> None:
        self.celery = celery
        self.client = client
        self.registry = registry
        self.timeout = timeout
        self.hub = EventHub(client)
        self.liveness = Liveness(client)

    def resolve(self, name: str, kind: str) -> ModelSpec:
        """The entry for ``name``: 404 if unknown, 400 if the wrong kind, 503 if no live worker."""
        spec = self.registry.get(name)
        if spec is None:
            raise APIError(404, f"The model `{name}` does not exist.", "model", "model_not_found")
        if spec.kind != kind:
            what = "chat and completions" if kind == CHAT else "embeddings"
            raise APIError(
                400, f"The model `{name}` does not support {what}.", "model", "model_not_supported"
            )
        try:
            live = self.liveness.is_live(name)
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

    def submit(self, spec: ModelSpec, job: dict[str, Any]) -> JobEvents:
        """Subscribe to the job's events, then enqueue it on the model's queue."""
        job = {"id": uuid.uuid4().hex, "model": spec.name, "created": time.time(), **job}
        log.info("job %s: %s for %s (user %s)", job["id"], job["kind"], spec.name, job.get("user"))
        task = GENERATE_TASK if spec.kind == CHAT else EMBED_TASK
        try:
            events = self.hub.open(job["id"])  # before the enqueue: pub/sub keeps nothing
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        try:
            self.celery.send_task(task, args=[job], queue=spec.name)
        except Exception as exc:
            events.close()
            raise queue_unavailable(exc) from exc
        return events

    def iterate(self, events: JobEvents) -> Iterator[dict[str, Any]]:
        """Yield a job's events up to and including the terminal one.

        An ``error`` event is raised as :class:`APIError`; no event within the timeout is a 504.
        If the consumer stops early (the client went away) the job is cancelled.
        """
        finished = False
        try:
            while True:
                try:
                    event = events.next(self.timeout)
                except queue.Empty:
                    raise APIError(
                        504,
                        f"The model worker sent nothing for {self.timeout:g} seconds.",
                        code="worker_timeout",
                        type_="timeout_error",
                    ) from None
                except EventGap as exc:
                    log.error("job %s: %s", events.job_id, exc)
                    raise APIError(502, "Events from the model worker were lost.") from None
                if event["type"] in TERMINAL:
                    finished = True
                    if event["type"] == ERROR:
                        err = event["error"]
                        raise APIError(
                            event.get("status", 500),
                            err["message"],
                            err.get("param"),
                            err.get("code"),
                            err.get("type"),
                        )
                yield event
                if finished:
                    return
        finally:
            events.close()
            if not finished:
                self.cancel(events.job_id)

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
