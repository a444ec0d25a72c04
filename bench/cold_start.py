"""Worker cold start: seconds from ``celery worker`` launch to its heartbeat (ready to serve).

    python -m bench.cold_start [--model smollm2-135m-instruct] [--runs 2]

The first run uses an empty MODEL_CACHE_DIR (a GGUF model is converted then); the later runs
load the cached copy, as every start after the first does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import redis

from config.keys import WORKERS_SET, heartbeat_key
from config.protocol import decode
from devtools.localstack import EmbeddedRedis, start_worker, stop_process


def time_to_ready(model: str, env: dict, client: redis.Redis, log: Path) -> float:
    started = time.perf_counter()
    process = start_worker([model], env, log=log)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            for worker_id in client.smembers(WORKERS_SET):
                raw = client.get(heartbeat_key(worker_id.decode()))
                if raw and model in decode(raw)["models"]:
                    return time.perf_counter() - started
            time.sleep(0.05)
    finally:
        stop_process(process)
        client.delete(WORKERS_SET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        env = {
            **os.environ,
            "REDIS_URL": server.start(),
            "MODEL_CACHE_DIR": f"{tmp}/cache",
            "HF_HUB_OFFLINE": "1",
        }
        client = redis.Redis.from_url(env["REDIS_URL"])
        try:
            for run in range(args.runs):
                seconds = time_to_ready(args.model, env, client, Path(tmp) / f"worker-{run}.log")
                what = "empty cache" if run == 0 else "cached copy"
                print(f"{args.model} worker, start to ready, {what}: {seconds:.1f} s", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
