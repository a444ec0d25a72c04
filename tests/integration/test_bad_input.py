"""Bad input costs nothing: a clear 400 at once for what the front can see, exactly one terminal
error event for whatever fails inside a worker, and the workers go on serving."""

import json
import threading
import time
import uuid

import pytest
from celery import Celery

from config.keys import events_channel
from config.lanes import Lanes
from config.protocol import TURN_TASK
from config.settings import celery_config
from tests.faulty_model import BOOM
from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, FAULTY, TINY
from tests.integration.http import open_stream, post, read_frames

pytestmark = pytest.mark.usefixtures("tiny_worker")

MESSAGES = [{"role": "user", "content": "Hi"}]


def error_of(reply, status):
    code, _, body = reply
    assert code == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "a\ud800"}]},
            "messages[0].content",
        ),
        ("/v1/completions", {"prompt": ["fine", "\udc00 lone"]}, "prompt[1]"),
        ("/v1/embeddings", {"input": "\ud83d"}, "input"),
        ("/v1/edits", {"instruction": "fix", "input": "x\udfff"}, "input"),
    ],
)
def test_text_no_tokenizer_can_encode_is_a_400_naming_it(front, path, body, param):
    # json.dumps writes a lone surrogate as the escape "\ud800", as a JSON client may.
    error = error_of(post(front, path, {"model": TINY, **body}), 400)
    assert error["param"] == param and "Unicode" in error["message"]


def test_completions_stop_at_16_tokens_by_default(openai_client):
    reply = openai_client.completions.create(model=TINY, prompt="Hello", temperature=0)
    assert reply.usage.completion_tokens == 16 and reply.choices[0].finish_reason == "length"


@pytest.fixture(scope="module")
def capped_front(stack):
    return stack.front(
        MAX_REQUEST_CHOICES="4",
        MAX_REQUEST_TOKENS="20",
        MAX_EMBEDDING_INPUTS="3",
        MAX_JSON_DEPTH="8",
    )


def test_caps_are_answered_before_anything_is_queued(capped_front, redis_client):
    before = redis_client.llen(TINY)
    cases = [
        ("/v1/completions", {"prompt": ["a", "b", "c"], "n": 2}, "too_many_choices"),
        ("/v1/chat/completions", {"messages": MESSAGES, "n": 5}, "too_many_choices"),
        ("/v1/embeddings", {"input": ["a", "b", "c", "d"]}, "too_many_inputs"),
        ("/v1/completions", {"prompt": [[1] * 21]}, "max_tokens_per_request"),
        (
            "/v1/chat/completions",
            {"messages": MESSAGES, "metadata": {"a": [[[[[[[1]]]]]]]}},
            "json_too_deep",
        ),
    ]
    for path, body, code in cases:
        error = error_of(post(capped_front, path, {"model": TINY, **body}), 400)
        assert error["code"] == code, error
    assert redis_client.llen(TINY) == before


def test_text_over_the_token_cap_is_refused_by_the_worker_before_it_runs(capped_front):
    long_text = "the quick brown fox jumps over the lazy dog " * 3
    error = error_of(
        post(capped_front, "/v1/completions", {"model": TINY, "prompt": long_text}), 400
    )
    assert error["code"] == "max_tokens_per_request" and "at most 20" in error["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"model": "tiny-chat", "messages": [], "temperature": NaN}',
        b'{"model": "tiny-chat", "prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}",
        b"\xff\xfe garbage",
    ],
)
def test_malformed_bodies_are_400s_and_the_front_goes_on(front, raw):
    error_of(post(front, "/v1/completions", None, raw=raw), 400)
    assert (
        post(front, "/v1/completions", {"model": TINY, "prompt": "Hi", "max_tokens": 2})[0] == 200
    )


# -- failures inside the worker, sent straight to it (bypassing the front's checks) -----------


def direct(redis_server, redis_client, queue: str, job: dict, old: bool = False) -> list[dict]:
    """Send ``job`` to a worker as the front would (``old``: as fronts did before lanes, the job
    in the Celery task); return every event it publishes (waiting a little after the terminal
    one, so that a second terminal event would be seen)."""
    job = {"id": uuid.uuid4().hex, "model": queue, "created": time.time(), **job}
    job["share"] = {"key": "", "weight": 1.0, "cost": 1}
    pubsub = redis_client.pubsub()
    pubsub.subscribe(events_channel(job["id"]))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    producer = Celery("direct")
    producer.conf.update(celery_config(redis_server.url))
    if old:
        producer.send_task("llm.generate", args=[job], queue=queue)
    else:
        Lanes(redis_client).push(queue, job)
        producer.send_task(TURN_TASK, args=[queue], queue=queue)
    events, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            events.append(json.loads(message["data"]))
            if events[-1]["type"] in ("done", "error"):
                deadline = min(deadline, time.monotonic() + 1)
    pubsub.close()
    producer.close()
    return events


def test_a_job_sent_the_old_way_still_runs(redis_server, redis_client):
    """A front from before lanes, during a rolling upgrade: its job is the task's argument."""
    job = {"kind": "completion", "prompts": ["Hello"], "params": {"max_tokens": 2}}
    events = direct(redis_server, redis_client, TINY, job, old=True)
    assert [e["type"] for e in events][-1] == "done"


def only_error(events: list[dict]) -> dict:
    assert [e["type"] for e in events] == ["error"], events
    return events[0]


@pytest.mark.parametrize(
    ("job", "code", "field"),
    [
        ({"kind": "completion", "prompts": ["a\ud800"]}, "invalid_request", "prompts[0]"),
        (
            {"kind": "chat", "messages": [{"role": "user", "content": "\udfff"}]},
            "invalid_request",
            "messages[0].content",
        ),
        ({"kind": "completion", "prompts": ["b", [1, 99999]]}, "invalid_request", "prompts[1]"),
        ({"kind": "completion", "prompts": 12}, "worker_error", None),
        (
            {"kind": "completion", "prompts": ["x"], "params": {"temperature": "hot"}},
            "worker_error",
            None,
        ),
        ({"kind": "completion"}, "worker_error", None),
    ],
)
def test_a_job_the_worker_cannot_run_ends_with_one_error_at_once(
    redis_server, redis_client, job, code, field
):
    """Straight to the worker, past the front: the error names the job's field at fault."""
    error = only_error(direct(redis_server, redis_client, TINY, job))
    assert (error["code"], error["field"]) == (code, field)


def test_a_job_for_a_model_the_worker_does_not_serve_ends_with_one_error(
    redis_server, redis_client
):
    job = {"kind": "completion", "prompts": ["x"], "model": "not-here"}
    events = direct(redis_server, redis_client, TINY, job)
    assert only_error(events)["code"] == "worker_error"


@pytest.mark.usefixtures("embed_worker")
def test_an_embedding_worker_refuses_bad_text_with_one_error(redis_server, redis_client):
    job = {"kind": "embedding", "inputs": ["fine", "bad \ud800"]}
    error = only_error(direct(redis_server, redis_client, EMBED_MODEL, job))
    assert (error["code"], error["field"]) == ("invalid_request", "inputs[1]")


# -- the faulty model: a template that refuses, a prompt that breaks the forward pass ---------


@pytest.mark.usefixtures("faulty_worker")
def test_a_conversation_the_template_refuses_is_a_400_in_its_words(front):
    body = {"model": FAULTY, "messages": [{"role": "assistant", "content": "Hi"}]}
    error = error_of(post(front, "/v1/chat/completions", body), 400)
    assert error["param"] == "messages" and "must start with a user" in error["message"]


@pytest.mark.usefixtures("faulty_worker")
def test_a_prompt_that_breaks_the_model_fails_alone(front, openai_client):
    body = {"model": FAULTY, "messages": MESSAGES, "max_tokens": 60, "temperature": 0}
    stream = open_stream(front, "/v1/chat/completions", {**body, "stream": True})
    assert stream.readline().startswith(b"data: ")  # running before the poison arrives
    results = []
    poison = {"model": FAULTY, "prompt": f"Hello {BOOM}", "max_tokens": 5}
    thread = threading.Thread(target=lambda: results.append(post(front, "/v1/completions", poison)))
    thread.start()
    stream.readline()
    frames = read_frames(stream)
    thread.join(30)
    error = error_of(results[0], 500)
    assert (error["code"], error["type"]) == ("engine_error", "server_error")
    chunks = [json.loads(f) for f in frames[:-1]]
    assert frames[-1] == "[DONE]" and chunks[-1]["choices"][0]["finish_reason"] == "length"
    reply = openai_client.chat.completions.create(**body)  # the worker still serves
    assert reply.usage.completion_tokens == 60


@pytest.mark.real_models
@pytest.mark.usefixtures("chat_worker", "embed_worker")
def test_the_default_models_refuse_bad_text_with_a_400(front):
    for path, body in (
        (
            "/v1/chat/completions",
            {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "\ud800"}]},
        ),
        ("/v1/embeddings", {"model": EMBED_MODEL, "input": ["ok", "\ud800"]}),
        ("/v1/embeddings", {"model": CHAT_MODEL, "input": "\ud800"}),
    ):
        assert error_of(post(front, path, body), 400)["param"]
