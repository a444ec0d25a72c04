"""Faults caused for real: workers killed with SIGKILL mid-job, a finished job queued again.

The killed workers serve ``smol-b`` (SmolLM2 under a second name), slow enough on 2 CPU cores
that a job is certainly still running when its worker dies.
"""

import json
import os
import signal
import threading
import time

from celery import Celery

from config.keys import claim_key, finished_key
from config.lanes import Lanes
from config.protocol import TURN_TASK
from config.settings import celery_config
from tests.integration.conftest import SMOL_B, TINY
from tests.integration.http import open_stream, post, read_frames

MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea."}]
LONG = {"model": SMOL_B, "messages": MESSAGES, "max_tokens": 120, "ignore_eos": True}


def wait_for(predicate, timeout=60.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
    return value


def test_streaming_client_of_a_killed_worker_gets_an_error_then_done(stack, front, redis_client):
    worker = stack.worker([SMOL_B], front)
    response = open_stream(front, "/v1/chat/completions", {**LONG, "stream": True})
    first = json.loads(response.readline().decode()[len("data: ") :])
    response.readline()
    job_id = first["id"].removeprefix("chatcmpl-")
    assert redis_client.get(claim_key(job_id)) == worker.worker_id
    killed_at = time.monotonic()
    os.killpg(worker.pid, signal.SIGKILL)
    frames = read_frames(response)
    waited = time.monotonic() - killed_at
    assert frames[-1] == "[DONE]"
    assert json.loads(frames[-2])["error"]["code"] == "worker_lost"
    print(f"\nstream error {waited:.1f} s after SIGKILL")
    assert waited < 10  # the bound: no client left hanging


def test_request_of_a_killed_worker_is_run_again_by_another(stack, front, redis_client):
    workers = [stack.worker([SMOL_B], front) for _ in range(2)]
    ids = {w.worker_id: w for w in workers}
    result = {}

    def request():
        result["reply"] = post(front, "/v1/chat/completions", {**LONG, "temperature": 0})

    thread = threading.Thread(target=request)
    thread.start()

    def claimed():
        for key in redis_client.scan_iter("llm:claim:*"):
            if redis_client.get(key) in ids:
                return key.removeprefix("llm:claim:"), redis_client.get(key)
        return None

    first_attempt, victim = wait_for(claimed)
    os.killpg(ids[victim].pid, signal.SIGKILL)
    thread.join(120)
    status, _, body = result["reply"]
    assert status == 200, body
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 120
    second_attempt = body["id"].removeprefix("chatcmpl-")
    assert second_attempt != first_attempt
    survivor = next(i for i in ids if i != victim)
    assert redis_client.get(claim_key(second_attempt)) == survivor
    # The request is recorded answered once, under its first attempt's id (the worker writes
    # it just after the answer goes out).
    assert wait_for(lambda: redis_client.get(finished_key(first_attempt)), 5) == "done"


def test_a_job_queued_again_after_it_finished_is_dropped(
    front, tiny_worker, openai_client, redis_server, redis_client
):
    reply = openai_client.completions.create(model=TINY, prompt="Hello", max_tokens=3)
    job_id = reply.id.removeprefix("cmpl-")
    job = {
        "id": job_id,
        "model": TINY,
        "kind": "completion",
        "prompts": ["Hello"],
        "params": {"max_tokens": 3},
        "share": {"key": "", "weight": 1.0, "cost": 5},
    }
    producer = Celery("redeliver")
    producer.conf.update(celery_config(redis_server.url))
    Lanes(redis_client).push(TINY, job)  # the same job queued again
    producer.send_task(TURN_TASK, args=[TINY], queue=TINY)
    wait_for(lambda: f"job {job_id} already answered; dropping" in tiny_worker.log.read_text())
    producer.close()


def test_disconnected_client_leaves_the_batch(stack, front, redis_client):
    """200 tokens take SmolLM2 about 13 s here; a cancelled stream leaves far sooner."""
    stack.worker([SMOL_B], front)

    def running():  # over every smol-b worker: one left by an earlier test may take the job
        loads = [redis_client.get(f"llm:worker:{w}") for w in redis_client.smembers("llm:workers")]
        return sum(
            json.loads(raw)["load"].get(SMOL_B, {}).get("running", 0) for raw in loads if raw
        )

    body = {**LONG, "max_tokens": 200, "stream": True}
    response = open_stream(front, "/v1/chat/completions", body)
    response.readline()
    wait_for(lambda: running() == 1, timeout=5)  # the heartbeat reports it within 0.5 s
    response.close()
    wait_for(lambda: running() == 0, timeout=5)
