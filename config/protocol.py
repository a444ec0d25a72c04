"""The message contract between the front and the workers: job payloads, events, Redis names.

Both sides import this module; it imports neither Flask nor torch. Everything on the wire is JSON.

A job is a dict: ``{"id", "model", "kind", "created", "params", ...}`` plus, by kind,
``messages`` (chat), ``prompts`` (completion: one sequence per prompt) or ``inputs`` (embedding).
A job the front submits again (its worker died) is a new attempt with its own ``id`` and the first
attempt's id as ``origin``: at most one attempt of an origin runs to its end.

Events, published on :func:`events_channel`, each carry the job id and a sequence number ``seq``
starting at 0:

- ``token``: ``index`` (which choice), ``text`` (delta), ``token_ids``, and ``finish_reason`` on
  the last event of that choice;
- ``done`` (terminal): ``usage``, plus ``data`` (the vectors) for an embedding job;
- ``error`` (terminal): ``status`` (HTTP) and ``error`` (an OpenAI error body).
"""

from __future__ import annotations

import json
from typing import Any

TOKEN = "token"
DONE = "done"
ERROR = "error"
TERMINAL = frozenset({DONE, ERROR})

GENERATE_TASK = "llm.generate"
EMBED_TASK = "llm.embed"

WORKERS_SET = "llm:workers"


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which a job's events are published."""
    return f"llm:events:{job_id}"


def cancel_key(job_id: str) -> str:
    """Key the front sets when the client went away; the engine checks it every step."""
    return f"llm:cancel:{job_id}"


def finished_key(job_id: str) -> str:
    """Key a worker sets once a job has run to the end, so a redelivered copy is dropped."""
    return f"llm:finished:{job_id}"


def claim_key(job_id: str) -> str:
    """Key naming the worker that runs a job, so the front can tell when that worker is gone."""
    return f"llm:claim:{job_id}"


def origin(job: dict[str, Any]) -> str:
    """The id of the request a job serves: a retried job is a new attempt with its own id."""
    return job.get("origin") or job["id"]


def heartbeat_key(worker_id: str) -> str:
    """Key (with a TTL) that says a worker is alive; its value is :func:`encode` of its status."""
    return f"llm:worker:{worker_id}"


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def decode(raw: str | bytes) -> dict[str, Any]:
    return json.loads(raw)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class EventSequence:
    """Numbers the events of one job on the publishing side."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._next = 0

    def make(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"job": self.job_id, "seq": self._next, "type": type_, **fields}
        self._next += 1
        return event


class EventGap(Exception):
    """Events of a job were lost between the worker and the front."""


class EventOrder:
    """Checks sequence numbers on the receiving side: drops duplicates, raises on a gap."""

    def __init__(self) -> None:
        self._expected = 0

    def accept(self, event: dict[str, Any]) -> bool:
        """Return True if ``event`` is the next one, False for a duplicate; raise on a gap."""
        seq = event.get("seq")
        if not isinstance(seq, int):
            raise EventGap(f"event without a sequence number: {event!r}")
        if seq < self._expected:
            return False
        if seq > self._expected:
            raise EventGap(f"expected event {self._expected}, got {seq}")
        self._expected += 1
        return True
