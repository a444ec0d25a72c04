"""``manage.py up`` as a new user runs it: the console says where Redis and the API are, one line
per model as it becomes ready, "ready" with the URL, then the request log without the stack's own
polls or Celery's warnings; Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from config.registry import DEFAULT_MODELS
from devtools.localstack import ROOT, EmbeddedRedis, free_port, stop_process
from tests.integration.http import get


def test_up_says_what_matters_and_logs_only_requests(tmp_path):
    redis_server = EmbeddedRedis(tmp_path / "redis")  # its own: the suite's workers stay out
    port = free_port()
    # Its own model cache too: a new user's first start, converting the GGUF model.
    env = {**os.environ, "REDIS_URL": redis_server.start(), "MODEL_CACHE_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    seen: list[str] = []

    def read_until(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in seen):
            assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(seen)}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "".join(seen)

    try:
        read_until("ready: ", 600)
        base = f"http://127.0.0.1:{port}"
        body = {"model": DEFAULT_MODELS[0].name, "prompt": "Hi", "max_tokens": 2}
        request = urllib.request.Request(
            f"{base}/v1/completions",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
        for _ in range(3):  # polls, as probes and the playground make them
            assert get(base, "/ready")[0] == 200 and get(base, "/status")[0] == 200
        read_until('"POST /v1/completions', 30)
        text = "".join(seen)
        assert seen[0].startswith("Redis: ") and f"API: http://localhost:{port}/v1" in text
        for spec in DEFAULT_MODELS:
            assert f"{spec.name}: ready (" in text
        assert "GET /ready" not in text and "GET /status" not in text
        assert "superuser" not in text.lower()  # Celery's warning when run as root
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=90) is not None
    finally:
        stop_process(process)
        redis_server.stop()
