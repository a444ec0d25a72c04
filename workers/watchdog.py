"""Noticing a stuck engine: a step that never ends (a hung GPU kernel, a deadlock) leaves the
heartbeat thread alive and the worker looking healthy while nothing moves.

On the heartbeat's thread, before each beat, the watchdog asks every engine whether one step has
run for ENGINE_STALL_TIMEOUT. If one has, the worker says so in its heartbeat (kept for
:data:`STALLED_TTL` seconds, so that ``/ready`` names it): the fronts stop routing to it, tell
its streaming clients, and run its other jobs again on another worker. Then the process exits
with :data:`STALL_EXIT_CODE`, so that a supervisor starts a fresh one: a stuck thread cannot be
stopped from Python, and a graceful shutdown would wait for it forever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)

STALL_EXIT_CODE = 3
STALLED_TTL = 300.0


class Watchdog:
    def __init__(
        self,
        engines: Mapping[str, Any],
        timeout: float,
        heartbeat: Heartbeat,
        exit_: Callable[[int], None] = os._exit,
    ) -> None:
        self.engines = engines
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.exit = exit_

    def check(self) -> None:
        stalled = sorted(name for name, e in self.engines.items() if e.stalled(self.timeout))
        if not stalled:
            return
        log.critical(
            "engine of %s: no step has finished for %.0f s (ENGINE_STALL_TIMEOUT); this worker "
            "stops counting as live and exits with status %d",
            ", ".join(stalled),
            self.timeout,
            STALL_EXIT_CODE,
        )
        self.heartbeat.stalled = stalled
        try:
            self.heartbeat.beat(ttl=max(STALLED_TTL, self.heartbeat.ttl))
        finally:
            logging.shutdown()
            self.exit(STALL_EXIT_CODE)
