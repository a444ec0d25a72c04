"""Raw HTTP: SSE framing, every error status, cancellation and the shared subscriber."""

import json
import os
import signal
import threading
import time

import pytest

from tests.integration.conftest import EMBED_MODEL, OFFLINE, STALL, TINY
from tests.integration.http import get, open_stream, post, read_frames

pytestmark = pytest.mark.usefixtures("tiny_worker")

CHAT = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}


def error_of(status, body, expected_status):
    assert status == expected_status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_sse_framing(front):
    response = open_stream(front, "/v1/chat/completions", {**CHAT, "max_tokens": 6, "stream": True})
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Accel-Buffering"] == "no"
    frames = read_frames(response)
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_malformed_json_and_bad_values_are_400(front):
    status, _, body = post(front, "/v1/chat/completions", None, raw=b'{"model": ')
    error_of(status, body, 400)
    status, _, body = post(front, "/v1/chat/completions", {**CHAT, "top_p": 9})
    assert error_of(status, body, 400)["param"] == "top_p"
    status, _, body = post(front, "/v1/completions", {"model": TINY, "prompt": 12})
    assert error_of(status, body, 400)["param"] == "prompt"


def test_prompt_longer_than_the_context_is_400_from_the_worker(front):
    long_prompt = "the quick brown fox jumps " * 100
    for stream in (False, True):
        status, _, body = post(
            front, "/v1/completions", {"model": TINY, "prompt": long_prompt, "stream": stream}
        )
        assert error_of(status, body, 400)["code"] == "context_length_exceeded"


@pytest.mark.usefixtures("embed_worker")
def test_unknown_model_is_404_and_an_embedding_model_cannot_chat(front):
    status, _, body = post(front, "/v1/chat/completions", {**CHAT, "model": "gpt-17"})
    assert error_of(status, body, 404)["code"] == "model_not_found"
    status, _, body = get(front, "/v1/models/gpt-17")
    error_of(status, body, 404)
    status, _, body = post(front, "/v1/chat/completions", {**CHAT, "model": EMBED_MODEL})
    error = error_of(status, body, 400)
    assert (error["param"], error["code"]) == ("model", "model_not_supported")


def test_known_model_without_a_live_worker_is_503_at_once(front):
    status, _, body = post(front, "/v1/chat/completions", {**CHAT, "model": OFFLINE})
    assert error_of(status, body, 503)["code"] == "model_not_available"
    status, _, body = post(front, "/v1/embeddings", {"model": EMBED_MODEL + "-x", "input": "x"})
    error_of(status, body, 404)


@pytest.fixture(scope="module")
def strict_front(stack):
    """A second front with API keys and short worker and queue timeouts."""
    return stack.front(API_KEYS="sekrit,other", WORKER_API_TIMEOUT="2", QUEUE_TIMEOUT="3")


def test_api_keys_are_enforced(strict_front):
    status, _, body = post(strict_front, "/v1/chat/completions", CHAT)
    assert error_of(status, body, 401)["code"] == "invalid_api_key"
    status, _, body = get(strict_front, "/v1/models", {"Authorization": "Bearer wrong"})
    error_of(status, body, 401)
    status, _, body = post(
        strict_front,
        "/v1/chat/completions",
        {**CHAT, "max_tokens": 2},
        {"Authorization": "Bearer other"},
    )
    assert status == 200 and body["choices"][0]["message"]["content"]


def test_a_worker_that_stops_answering_gives_504(strict_front, stall_worker):
    auth = {"Authorization": "Bearer sekrit"}
    body = {**CHAT, "model": STALL, "max_tokens": 200, "ignore_eos": True, "stream": True}
    response = open_stream(strict_front, "/v1/chat/completions", body, auth)
    assert response.readline().startswith(b"data: ")  # a worker holds the job and speaks
    os.killpg(stall_worker.pid, signal.SIGSTOP)
    try:
        error = None
        for line in response:
            if line.startswith(b'data: {"error"'):
                error = json.loads(line[len("data: ") :])["error"]
                break
        assert error and error["code"] == "worker_timeout"
        # The frozen worker takes nothing: a new request waits its queue timeout, then 504.
        status, _, body = post(strict_front, "/v1/chat/completions", {**CHAT, "model": STALL}, auth)
        assert error_of(status, body, 504)["code"] == "queue_timeout"
    finally:
        os.killpg(stall_worker.pid, signal.SIGCONT)
        response.close()


def test_client_that_disconnects_cancels_its_job(front, redis_client):
    body = {**CHAT, "max_tokens": 200, "stream": True}
    response = open_stream(front, "/v1/chat/completions", body)
    first = json.loads(response.readline().decode()[len("data: ") :])
    response.close()
    job_id = first["id"].removeprefix("chatcmpl-")
    for _ in range(100):
        outcome = redis_client.get(f"llm:finished:{job_id}")
        if outcome:
            break
        time.sleep(0.1)
    assert outcome == "error:cancelled"


def subscribers(redis_client) -> int:
    return sum(1 for c in redis_client.client_list() if int(c.get("sub", 0)) > 0)


def test_one_subscriber_connection_for_many_concurrent_requests(front, stall_worker, redis_client):
    """Requests waiting on a frozen worker hold their subscriptions open all at once."""

    def request():
        post(front, "/v1/chat/completions", {**CHAT, "model": STALL, "max_tokens": 2})

    os.killpg(stall_worker.pid, signal.SIGSTOP)
    threads = [threading.Thread(target=request) for _ in range(6)]

    def channels() -> int:
        return len(redis_client.pubsub_channels("llm:events:*"))

    def wait_for_channels(count: int) -> None:
        deadline = time.monotonic() + 15  # a request subscribes as soon as it is read
        while channels() < count:
            assert time.monotonic() < deadline, "the requests did not all subscribe"
            time.sleep(0.1)

    try:
        before = channels()
        threads[0].start()
        wait_for_channels(before + 1)
        with_one = subscribers(redis_client)
        for thread in threads[1:]:
            thread.start()
        wait_for_channels(before + 6)
        assert channels() == before + 6
        assert subscribers(redis_client) == with_one
    finally:
        os.killpg(stall_worker.pid, signal.SIGCONT)
        for thread in threads:
            thread.join(60)


def test_metrics_in_prometheus_format(front, openai_client):
    from prometheus_client.parser import text_string_to_metric_families

    openai_client.chat.completions.create(model=TINY, messages=CHAT["messages"], max_tokens=3)
    list(
        openai_client.chat.completions.create(
            model=TINY, messages=CHAT["messages"], max_tokens=3, stream=True
        )
    )
    status, headers, text = get(front, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    chat = ("endpoint", "/v1/chat/completions")
    assert samples[("llm_requests_total", (chat, ("status", "200")))] >= 2
    assert samples[("llm_request_duration_seconds_count", (chat,))] >= 2
    assert samples[("llm_time_to_first_token_seconds_count", (("model", TINY),))] >= 2
    tiny = (("model", TINY),)
    assert samples[("llm_generation_tokens_total", tiny)] >= 6
    assert samples[("llm_prompt_tokens_total", tiny)] >= 2
    assert samples[("llm_request_success_total", (("finished_reason", "length"), *tiny))] >= 2
    assert samples[("llm_inter_token_latency_seconds_count", tiny)] >= 4
    assert samples[("llm_e2e_request_latency_seconds_count", tiny)] >= 2
    assert samples[("llm_request_queue_time_seconds_count", tiny)] >= 2
    assert ("llm_num_requests_running", tiny) in samples
    assert ("llm_num_requests_waiting", tiny) in samples
    assert samples[("llm_live_workers", (("model", TINY),))] >= 1
    assert samples[("llm_live_workers", (("model", OFFLINE),))] == 0
    assert ("llm_queue_depth", (("model", TINY),)) in samples
    assert ("llm_open_streams", ()) in samples
