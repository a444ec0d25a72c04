"""Graceful shutdown, caused for real with SIGTERM: a front lets its open streams finish and
takes no new connection; a worker finishes the sequences it runs and takes no new job, and ends
those still running with an error once SHUTDOWN_TIMEOUT has passed."""

import json
import os
import signal
import time

from tests.integration.conftest import FAULTY_DRAIN, SMOL_C
from tests.integration.http import get, open_stream, post, read_frames

BODY = {
    "model": SMOL_C,
    "messages": [{"role": "user", "content": "Tell me about the sea."}],
    "max_tokens": 40,
    "ignore_eos": True,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def finish_and_usage(frames):
    chunks = [json.loads(f) for f in frames if f != "[DONE]"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    return finishes[-1], chunks[-1]["usage"]


def test_sigterm_lets_streams_finish_on_the_front_then_on_the_worker(stack, front, redis_client):
    worker = stack.worker([SMOL_C], front)
    draining_front = stack.front()
    process = stack.processes[-1]

    # The front: the open stream runs to its end; new connections are refused.
    response = open_stream(draining_front, "/v1/chat/completions", BODY)
    response.readline(), response.readline()  # the first frame: the stream is under way
    os.killpg(process.pid, signal.SIGTERM)
    frames = read_frames(response)
    assert frames[-1] == "[DONE]"
    assert finish_and_usage(frames) == (
        "length",
        {
            "prompt_tokens": 36,
            "completion_tokens": 40,
            "total_tokens": 76,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    assert process.wait(30) == 0
    assert get(draining_front, "/health")[0] == 0  # nothing listens any more

    # The worker: the running sequence finishes; meanwhile new requests get 503 at once.
    response = open_stream(front, "/v1/chat/completions", BODY)
    response.readline(), response.readline()  # the first frame: the sequence is running
    os.killpg(worker.pid, signal.SIGTERM)
    key = f"llm:worker:{worker.worker_id}"
    deadline = time.monotonic() + 10
    while not json.loads(redis_client.get(key) or "{}").get("draining"):
        assert time.monotonic() < deadline, "the heartbeat never said draining"
        time.sleep(0.05)
    time.sleep(1.1)  # the front's liveness cache holds a read for up to a second
    status, _, body = post(front, "/v1/chat/completions", {**BODY, "stream": False})
    assert status == 503 and body["error"]["code"] == "model_not_available"
    frames = read_frames(response)
    assert finish_and_usage(frames)[0] == "length"
    assert worker.wait(60) == 0


def test_a_drain_that_runs_out_of_time_ends_the_running_sequences(stack, front):
    # 200 tokens at 100 ms a step: 20 s of work, against a 1 s drain.
    worker = stack.worker([FAULTY_DRAIN], front, FAULTY_STEP_DELAY="0.1", SHUTDOWN_TIMEOUT="1")
    body = {**BODY, "model": FAULTY_DRAIN, "max_tokens": 200}
    response = open_stream(front, "/v1/chat/completions", body)
    response.readline(), response.readline()  # the first frame: the sequence is running
    os.killpg(worker.pid, signal.SIGTERM)
    started = time.monotonic()
    frames = read_frames(response)
    ended = time.monotonic() - started
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["code"] == "worker_shutdown" and error["type"] == "service_unavailable_error"
    print(f"\nthe drain ended the stream after {ended:.1f} s (SHUTDOWN_TIMEOUT 1 s)")
    assert ended < 10  # well before the 20 s the sequence would have run
    assert worker.wait(60) == 0
