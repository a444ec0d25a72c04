"""Backpressure (a cap on queued jobs per model) and per-key rate limits shared by two fronts."""

import json
import os
import signal
import threading
import time

import pytest

from tests.integration.conftest import STALL, TINY
from tests.integration.http import post

CHAT = {
    "model": TINY,
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 5,
    "temperature": 0,
}


@pytest.mark.usefixtures("tiny_worker")
def test_a_full_queue_answers_429_with_retry_after(stack, stall_worker, redis_client):
    """The worker is frozen for well under its heartbeat TTL."""
    front = stack.front(MAX_QUEUED_JOBS="2")
    body = {**CHAT, "model": STALL}
    assert post(front, "/v1/chat/completions", body)[0] == 200  # connections up before the clock
    os.killpg(stall_worker.pid, signal.SIGSTOP)  # nothing leaves the queue now
    threads = [
        threading.Thread(target=post, args=(front, "/v1/chat/completions", body)) for _ in range(3)
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while redis_client.llen(STALL) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, headers, reply = post(front, "/v1/chat/completions", body)
        assert status == 429, reply
        assert reply["error"]["code"] == "queue_full" and headers["Retry-After"] == "1"
        status, _, _ = post(front, "/v1/chat/completions", CHAT)  # other models are not held up
        assert status == 200
    finally:
        os.killpg(stall_worker.pid, signal.SIGCONT)
        for thread in threads:
            thread.join(60)


@pytest.fixture(scope="module")
def limited_fronts(stack):
    limits = {"rl-requests": {"rpm": 3}, "rl-tokens": {"tpm": 10}, "*": {"rpm": 1000}}
    env = {"API_KEYS": "rl-requests,rl-tokens,rl-other", "RATE_LIMITS": json.dumps(limits)}
    return stack.front(**env), stack.front(**env)


def fresh_minute():
    """Counts are per minute: start a test well inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


@pytest.mark.usefixtures("tiny_worker")
def test_requests_per_minute_are_shared_by_the_fronts(limited_fronts):
    fresh_minute()
    auth = {"Authorization": "Bearer rl-requests"}
    remaining = []
    for i in range(3):
        status, headers, _ = post(limited_fronts[i % 2], "/v1/chat/completions", CHAT, auth)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    status, headers, body = post(limited_fronts[1], "/v1/chat/completions", CHAT, auth)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s") and int(headers["Retry-After"]) > 0
    # Other keys have their own counts.
    other = {"Authorization": "Bearer rl-other"}
    status, headers, _ = post(limited_fronts[0], "/v1/chat/completions", CHAT, other)
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "1000"


@pytest.mark.usefixtures("tiny_worker")
def test_tokens_per_minute(limited_fronts):
    fresh_minute()
    auth = {"Authorization": "Bearer rl-tokens"}
    status, headers, body = post(limited_fronts[0], "/v1/chat/completions", CHAT, auth)
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "10"
    assert body["usage"]["total_tokens"] > 10
    status, headers, body = post(
        limited_fronts[1], "/v1/completions", {"model": TINY, "prompt": "x", "max_tokens": 1}, auth
    )
    assert status == 429 and "tokens per minute" in body["error"]["message"]
    assert headers["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.usefixtures("tiny_worker")
def test_a_key_that_filled_the_queue_does_not_lock_another_key_out(
    stack, stall_worker, redis_client
):
    front = stack.front(MAX_QUEUED_JOBS="2", API_KEYS="flood-key,other-key")
    body = {**CHAT, "model": STALL}
    flood, other = ({"Authorization": f"Bearer {k}"} for k in ("flood-key", "other-key"))
    assert post(front, "/v1/chat/completions", body, flood)[0] == 200
    os.killpg(stall_worker.pid, signal.SIGSTOP)  # nothing leaves the queue now
    results = []

    def send(headers):
        results.append(post(front, "/v1/chat/completions", body, headers)[0])

    threads = []
    try:
        deadline = time.monotonic() + 10
        while redis_client.llen(STALL) < 2 and time.monotonic() < deadline:
            threads.append(threading.Thread(target=send, args=(flood,)))
            threads[-1].start()
            time.sleep(0.3)
        status, _, reply = post(front, "/v1/chat/completions", body, flood)
        assert status == 429, reply  # the flooding key is over the cap
        # The other key still gets its part of the cap: queued, and answered once thawed.
        threads.append(threading.Thread(target=send, args=(other,)))
        threads[-1].start()
        time.sleep(1)
        assert results == []  # waiting, not refused
    finally:
        os.killpg(stall_worker.pid, signal.SIGCONT)
        for thread in threads:
            thread.join(60)
    assert results == [200] * len(threads)
