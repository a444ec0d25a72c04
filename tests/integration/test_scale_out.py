"""Many models, many machines: a worker serving several models (LoRA adapters on one base, an
alias, an embedding model), two workers sharing one queue, a dtype setting, and the production
pieces: gunicorn with gevent workers for the front, Flower watching the workers."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config.keys import claim_key, heartbeat_key
from config.protocol import decode
from devtools.localstack import ROOT, free_port, spawn, stop_process
from tests.integration.conftest import ALIAS, BASE, EMBED_MODEL, LORA_A, LORA_B, SHARED, TINY
from tests.integration.http import get, post

PROMPT = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}


def worker_status(redis_client, worker) -> dict:
    return decode(redis_client.get(heartbeat_key(worker.worker_id)))


def job_id(body: dict) -> str:
    return body["id"].split("-", 1)[1]


@pytest.fixture(scope="module")
def multi_worker(stack, front):
    return stack.worker([BASE, LORA_A, LORA_B, EMBED_MODEL], front)


def test_one_worker_serves_several_models_and_adapters(multi_worker, front, redis_client):
    status = worker_status(redis_client, multi_worker)
    assert sorted(status["models"]) == sorted([BASE, LORA_A, LORA_B, EMBED_MODEL])
    assert {status["load"][m]["device"] for m in status["models"]} == {"cpu"}

    texts = {}
    for name in (BASE, ALIAS, LORA_A, LORA_B):
        code, _, body = post(front, "/v1/completions", {**PROMPT, "model": name})
        assert code == 200, body
        assert body["model"] == name  # the name asked for, as OpenAI answers
        assert redis_client.get(claim_key(job_id(body))) == multi_worker.worker_id
        texts[name] = body["choices"][0]["text"]
    assert texts[ALIAS] == texts[BASE]  # an alias is the same model
    # Each adapter changes the base's greedy output, each in its own way.
    assert len({texts[BASE], texts[LORA_A], texts[LORA_B]}) == 3
    code, _, body = post(front, "/v1/embeddings", {"model": EMBED_MODEL, "input": "hello"})
    assert code == 200 and len(body["data"][0]["embedding"]) == 384


def test_adapters_in_one_batch_answer_as_they_do_alone(multi_worker, front):
    alone = {m: post(front, "/v1/completions", {**PROMPT, "model": m})[2] for m in (LORA_A, LORA_B)}
    with ThreadPoolExecutor(6) as pool:  # both adapters and the base, in one batch
        names = [LORA_A, LORA_B, BASE] * 2
        replies = list(
            pool.map(lambda m: post(front, "/v1/completions", {**PROMPT, "model": m}), names)
        )
    for name, (code, _, body) in zip(names, replies, strict=True):
        assert code == 200
        if name != BASE:
            assert body["choices"][0]["text"] == alone[name]["choices"][0]["text"]


def test_adapters_embed_through_their_own_weights(multi_worker, front):
    def embed(model: str) -> list[float]:
        body = {"model": model, "input": "Once upon a time", "encoding_format": "float"}
        code, _, reply = post(front, "/v1/embeddings", body)
        assert code == 200, reply
        return reply["data"][0]["embedding"]

    base, alias, lora = embed(BASE), embed(ALIAS), embed(LORA_A)
    assert alias == pytest.approx(base, abs=1e-6)
    assert lora != pytest.approx(base, abs=1e-4)


def test_models_list_aliases_and_adapters(multi_worker, front):
    cards = {m["id"]: m for m in get(front, "/v1/models")[2]["data"]}
    assert cards[ALIAS]["root"] == BASE and cards[ALIAS]["parent"] is None
    assert cards[LORA_A]["root"] == LORA_A and cards[LORA_A]["parent"] == BASE


def test_two_workers_on_one_queue_share_its_jobs(stack, front, redis_client):
    workers = [stack.worker([SHARED], front), stack.worker([SHARED], front, DTYPE="bfloat16")]
    assert worker_status(redis_client, workers[1])["load"][SHARED]["dtype"] == "bfloat16"

    def ask(i: int):
        body = {"model": SHARED, "prompt": f"Hello {i}", "max_tokens": 40, "temperature": 0}
        return post(front, "/v1/completions", body)

    with ThreadPoolExecutor(8) as pool:  # each worker holds 2 at a time: both must take some
        replies = list(pool.map(ask, range(8)))
    assert all(code == 200 for code, _, _ in replies)
    takers = [redis_client.get(claim_key(job_id(body))) for _, _, body in replies]
    assert set(takers) == {w.worker_id for w in workers}
    print(f"\njobs per worker: {sorted(takers.count(w.worker_id) for w in workers)}")


def test_gunicorn_serves_the_front_with_gevent_workers(stack, tiny_worker, tmp_path):
    port = free_port()
    env = {**stack.env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = spawn(
        [gunicorn, "-c", str(ROOT / "gunicorn.conf.py")], env, tmp_path / "gunicorn.log"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while get(base, "/health")[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "gunicorn.log"
            ).read_text()
            time.sleep(0.2)
        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key="EMPTY", max_retries=0)
        messages = [{"role": "user", "content": "Hello"}]

        def stream(_: int) -> tuple[str, str]:
            chunks = list(
                client.chat.completions.create(
                    # Greedy: sampled, the tiny model's 10 tokens may all be partial bytes
                    # or special tokens, which make no text.
                    model=TINY,
                    messages=messages,
                    max_tokens=10,
                    stream=True,
                    temperature=0,
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return text, chunks[-1].choices[0].finish_reason

        with ThreadPoolExecutor(4) as pool:  # spread over both processes
            results = list(pool.map(stream, range(4)))
        assert all(text and reason == "length" for text, reason in results)
        log = (tmp_path / "gunicorn.log").read_text()
        assert "Using worker: gevent" in log and log.count("Booting worker") == 2
    finally:
        stop_process(process)
    assert process.returncode == 0  # SIGTERM: a graceful stop


def test_flower_sees_the_workers(stack, tiny_worker, tmp_path):
    port = free_port()
    env = {**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    command = [sys.executable, "-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1"]
    process = spawn([*command, f"--port={port}"], env, tmp_path / "flower.log")
    node = tiny_worker.worker_id.rsplit(":", 1)[0]
    try:
        deadline = time.monotonic() + 60
        workers = {}
        while node not in workers:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "flower.log"
            ).read_text()
            try:
                url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
                with urllib.request.urlopen(url, timeout=10) as response:
                    workers = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert TINY in {q["name"] for q in workers[node]["active_queues"]}
    finally:
        stop_process(process)
