"""How an engine reaches the outside world: events out, cancellations in."""

from __future__ import annotations

import threading
from typing import Any, Protocol


class JobIO(Protocol):
    def exchange(self, events: list[dict[str, Any]], job_ids: list[str]) -> set[str]:
        """Publish ``events`` (in order) and return which of ``job_ids`` have been cancelled."""
        ...


class Ticket:
    """Completion handle for one submitted job; the Celery task thread waits on it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.outcome: str | None = None  # "done", "error" or "cancelled"

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()
