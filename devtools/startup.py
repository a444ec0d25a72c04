"""What ``manage.py up`` shows while the stack starts: one line per model as it loads (a live
progress line on a terminal), then the request log without the polls.

The workers' and the front's own output goes to files under ``.run/``; the console gets only
what a person starting the stack needs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from subprocess import Popen
from typing import TextIO

# Requests the stack makes to itself (readiness probes, the playground's status panel).
POLLS = ('"GET /ready ', '"GET /health ', '"GET /status ', '"GET /metrics ')
SPINNER = "|/-\\"


class Progress:
    """What ``up`` shows while it waits for the models (an ``on_poll`` for
    :func:`~devtools.localstack.wait_for_models`): a line per model once it is ready (seconds
    since the start), and on a terminal one updating line of what is still loading."""

    def __init__(self, models: list[str], out: TextIO = sys.stdout) -> None:
        self.models, self.out = models, out
        self.ready: set[str] = set()
        self.tick = 0

    def __call__(self, live: set[str], elapsed: float) -> None:
        tty = self.out.isatty()
        for model in self.models:
            if model not in self.ready and model in live:
                self.ready.add(model)
                self.out.write(
                    ("\r\033[K" if tty else "") + f"  {model}: ready ({elapsed:.0f} s)\n"
                )
        waiting = [m for m in self.models if m not in self.ready]
        if tty and waiting:
            bar = SPINNER[self.tick % len(SPINNER)]
            self.out.write(f"\r\033[K  {bar} loading {', '.join(waiting)} ... {elapsed:.0f} s")
        self.out.flush()
        self.tick += 1


def follow(path: Path, processes: list[Popen], out: TextIO = sys.stdout) -> None:
    """Copy the lines added to ``path`` to ``out`` (leaving out the polls) while every process
    runs; returns when one exits."""
    with open(path, errors="replace") as log:
        log.seek(0, 2)
        while all(p.poll() is None for p in processes):
            line = log.readline()
            if not line:
                time.sleep(0.2)
                continue
            if not any(poll in line for poll in POLLS):
                out.write(line)
                out.flush()
