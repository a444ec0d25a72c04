"""What ``manage.py up`` shows while the stack starts: one line per model as it loads (a live
progress line on a terminal), then the request log without the polls.

The workers' and the front's own output goes to files under ``.run/``; the console gets only
what a person starting the stack needs.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from subprocess import Popen
from typing import TextIO

from config.localstack import check_running

# Requests the stack makes to itself (readiness probes, the playground's status panel).
POLLS = ('"GET /ready ', '"GET /health ', '"GET /status ', '"GET /metrics ')
SPINNER = "|/-\\"


def live_models(base_url: str) -> dict[str, int]:
    """Model -> live workers, from the front's ``/status``; empty while the front is not up."""
    try:
        with urllib.request.urlopen(f"{base_url}/status", timeout=2) as response:
            return {row["model"]: row["live_workers"] for row in json.load(response)["models"]}
    except (urllib.error.URLError, ConnectionError, OSError, ValueError, KeyError):
        return {}


def wait_with_progress(
    base_url: str,
    models: list[str],
    processes: list[Popen],
    timeout: float,
    out: TextIO = sys.stdout,
) -> dict[str, float]:
    """Wait until every model has a live worker, saying so once per model (seconds since the
    start), with one updating line of what is still loading on a terminal. Returns the seconds
    each model took."""
    started, ready = time.monotonic(), {}
    tty = out.isatty()
    tick = 0
    while len(ready) < len(models):
        check_running(processes)
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise TimeoutError(
                f"models {sorted(set(models) - set(ready))} not ready after {timeout:.0f} s"
            )
        live = live_models(base_url)
        for model in models:
            if model not in ready and live.get(model):
                ready[model] = elapsed
                out.write(("\r\033[K" if tty else "") + f"  {model}: ready ({elapsed:.0f} s)\n")
        waiting = [m for m in models if m not in ready]
        if tty and waiting:
            bar = SPINNER[tick % len(SPINNER)]
            out.write(f"\r\033[K  {bar} loading {', '.join(waiting)} ... {elapsed:.0f} s")
        out.flush()
        tick += 1
        time.sleep(0.25)
    return ready


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
