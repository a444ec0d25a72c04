"""Work for nobody is cancelled: a client that closes its connection while it waits for a
non-streamed answer (or for its stream's first token) has its job cancelled, and the engine
frees its slots; a job still in the queue is dropped when a worker takes it."""

import http.client
import json
import os
import signal
import time
from urllib.parse import urlparse

import pytest

from config.keys import cancel_key, claim_key, finished_key
from tests.integration.conftest import FAULTY, STALL
from tests.integration.http import get

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return value


def send_and_leave_open(front: str, path: str, body: dict) -> http.client.HTTPConnection:
    """Send a request and read nothing back: the caller closes the connection to leave."""
    url = urlparse(front)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return conn


def running(front: str, model: str) -> int:
    """Rows the model's engines hold now (running and waiting to join), as their heartbeats
    tell ``/status``."""
    status, _, body = get(front, "/status")
    assert status == 200, body
    (row,) = [r for r in body["models"] if r["model"] == model]
    return row["running"] + row["waiting"]


def claimed_by(redis_client, worker_id: str, seen: set) -> str | None:
    for key in redis_client.scan_iter("llm:claim:*"):
        job_id = key.removeprefix("llm:claim:")
        if job_id not in seen and redis_client.get(key) == worker_id:
            return job_id
    return None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES}),
        ("/v1/completions", {"prompt": "Once upon a time"}),
        ("/v1/edits", {"instruction": "Longer", "input": "A story.", "max_tokens": 100}),
        ("/v1/chat/completions", {"messages": MESSAGES, "n": 3}),
    ],
)
def test_a_client_that_leaves_a_non_streamed_request_cancels_it(
    front, faulty_worker, redis_client, path, body
):
    """100 to 200 tokens at 20 ms a step take the faulty model 2 s or more; the client leaves
    well before."""
    seen = set(k.removeprefix("llm:claim:") for k in redis_client.scan_iter("llm:claim:*"))
    request = {"model": FAULTY, "max_tokens": 200, "ignore_eos": True, **body}
    conn = send_and_leave_open(front, path, request)
    job_id = wait_for(lambda: claimed_by(redis_client, faulty_worker.worker_id, seen))
    rows = body.get("n", 1)
    wait_for(lambda: running(front, FAULTY) == rows, 10)  # generating now, a row per choice
    conn.close()
    assert wait_for(lambda: redis_client.get(finished_key(job_id)), 10) == "error:cancelled"
    assert redis_client.get(cancel_key(job_id)) == "1"
    # The engine freed its slots: its next heartbeats count no row (the job had seconds to go).
    wait_for(lambda: running(front, FAULTY) == 0, 5)


def test_an_embedding_abandoned_in_the_queue_is_dropped(front, stall_worker, redis_client):
    os.killpg(stall_worker.pid, signal.SIGSTOP)  # nothing is taken from the queue now
    try:
        before = set(redis_client.pubsub_channels("llm:events:*"))
        conn = send_and_leave_open(front, "/v1/embeddings", {"model": STALL, "input": "waiting"})
        # The front subscribes to the job's events, then enqueues it.
        (channel,) = wait_for(lambda: set(redis_client.pubsub_channels("llm:events:*")) - before)
        job_id = channel.removeprefix("llm:events:")
        time.sleep(0.5)
        conn.close()
        wait_for(lambda: redis_client.get(cancel_key(job_id)), 10)
    finally:
        os.killpg(stall_worker.pid, signal.SIGCONT)
    wait_for(lambda: f"job {job_id} cancelled; dropping this copy" in stall_worker.log.read_text())
    assert redis_client.get(claim_key(job_id)) is None  # never ran
