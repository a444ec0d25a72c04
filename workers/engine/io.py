"""How an engine reaches the outside world: events out, cancellations in."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from config.events import Event

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The outside world cannot be reached for now (Redis is down): try the same again later."""


class JobIO(Protocol):
    def exchange(self, events: list[Event], job_ids: list[str]) -> set[str]:
        """Publish ``events`` (in order) and return which of ``job_ids`` have been cancelled;
        raise :class:`Unavailable` if that cannot be done for now (nothing was recorded)."""
        ...


class Ticket:
    """Completion handle for one submitted job; the Celery task thread waits on it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.outcome: str | None = None  # "done", "error" or "cancelled"
        self.tokens = 0  # what it was served, prompt and reply (what its key pays for)
        # When (time.time_ns) the job reached each phase: submitted, prefill, first_token, end
        # (what a trace shows of the engine; see config/tracing.py).
        self.marks: dict[str, int] = {"submitted": time.time_ns()}

    def mark(self, phase: str) -> None:
        """Note that the job reached ``phase`` now (the first time only)."""
        self.marks.setdefault(phase, time.time_ns())

    def finish(self, outcome: str, tokens: int = 0) -> None:
        self.outcome, self.tokens = outcome, tokens
        self.mark("end")
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()


def exchange_patiently(
    io: JobIO,
    events: list[Event],
    job_ids: list[str],
    waiting: Callable[[], bool],
) -> set[str]:
    """``io.exchange``, tried again every half second while the outside world is unavailable,
    so that an outage pauses the engine instead of failing its jobs (their events go out, in
    order, once it is back). ``waiting()`` is called before each new try; it returns False to
    give up (the engine is stopping), and the :class:`Unavailable` is raised."""
    warned = False
    while True:
        try:
            return io.exchange(events, job_ids)
        except Unavailable as exc:
            if not waiting():
                raise
            if not warned:
                log.warning("events cannot be sent (%s); the engine waits", exc)
                warned = True
            time.sleep(0.5)
