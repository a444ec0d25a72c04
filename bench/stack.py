"""The stack a benchmark runs against: Redis, one worker for the model and the front, started as
``manage.py up`` starts them, their files in .run/<name>-*."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_stack(model: str, port: int, name: str = "bench", **env_changes: str):
    """Redis, one worker for ``model`` and the front, as ``manage.py up`` starts them; their
    files go to .run/<name>-*."""
    from devtools.localstack import EmbeddedRedis, start_front, start_worker, wait_for_models

    redis_server = EmbeddedRedis(ROOT / ".run" / f"{name}-redis")
    env = {**os.environ, "REDIS_URL": redis_server.start(), **env_changes}
    logs = ROOT / ".run"
    processes = [
        start_worker([model], env, log=logs / f"{name}-worker.log"),
        start_front("127.0.0.1", port, env, logs / f"{name}-front.log", ["--quiet"]),
    ]
    wait_for_models(f"http://127.0.0.1:{port}", [model], 600, processes)
    return redis_server, processes


def stop_stack(redis_server, processes) -> None:
    from devtools.localstack import stop_process

    for process in reversed(processes):
        stop_process(process)
    redis_server.stop()


def peak_rss_mib(pid: int) -> float | None:
    """A running process's peak resident memory (VmHWM), in MiB; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
