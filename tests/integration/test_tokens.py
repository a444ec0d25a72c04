"""Tokenize and detokenize, for real: a chat's count is the prompt_tokens of the same chat
request, text goes to ids and back, a worker answers while its engine is full, and bad requests
are 400s."""

import threading
import time

import httpx
import pytest

from tests.integration.conftest import EMBED_MODEL, FAULTY, TINY, TOOLS
from tests.integration.http import open_stream
from tests.integration.test_tools import WEATHER

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]


def post(front: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{front}{path}", json=body, timeout=60)


@pytest.mark.usefixtures("tiny_worker")
def test_a_chats_token_count_is_its_requests_prompt_tokens(front, openai_client):
    reply = post(front, "/tokenize", {"model": TINY, "messages": MESSAGES})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    chat = openai_client.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=1)
    assert body["count"] == len(body["tokens"]) == chat.usage.prompt_tokens
    assert body["max_model_len"] > body["count"] and body["token_strs"] is None


@pytest.mark.usefixtures("tools_worker")
def test_a_chat_with_tools_counts_as_its_request_does(front, openai_client):
    body = {"model": TOOLS, "messages": MESSAGES, "tools": [WEATHER]}
    counted = post(front, "/tokenize", body).json()["count"]
    chat = openai_client.chat.completions.create(**body, max_tokens=1)
    assert counted == chat.usage.prompt_tokens
    without_tools = post(front, "/tokenize", {"model": TOOLS, "messages": MESSAGES}).json()
    assert without_tools["count"] < counted
    # Without the assistant's turn opened after it: fewer tokens.
    unopened = post(front, "/tokenize", {**body, "add_generation_prompt": False}).json()
    assert unopened["count"] < counted


@pytest.mark.usefixtures("tiny_worker", "embed_worker")
@pytest.mark.parametrize("model", [TINY, EMBED_MODEL])
def test_text_goes_to_token_ids_and_back(front, model):
    text = "Hello world, how are you"
    bare = post(
        front, "/v1/tokenize", {"model": model, "prompt": text, "add_special_tokens": False}
    )
    assert bare.status_code == 200, bare.text
    tokens = bare.json()["tokens"]
    with_specials = post(front, "/tokenize", {"model": model, "prompt": text}).json()
    assert with_specials["count"] >= len(tokens)  # BOS (and EOS, for MiniLM) around the text
    named = post(front, "/tokenize", {"model": model, "prompt": text, "return_token_strs": True})
    assert len(named.json()["token_strs"]) == with_specials["count"]
    back = post(front, "/detokenize", {"model": model, "tokens": tokens})
    assert back.status_code == 200, back.text
    assert back.json()["prompt"].lower() == text.lower()  # MiniLM's vocabulary is lower case


@pytest.mark.usefixtures("faulty_worker")
def test_a_worker_answers_while_its_engine_is_full(front):
    """Every row of the (slowed) faulty model busy and two requests queued for a slot: a
    tokenize request is answered before either of them starts."""
    body = {"model": FAULTY, "prompt": "Hello", "max_tokens": 200, "ignore_eos": True}
    started, streams, lock = [], [], threading.Lock()

    def run():
        # The stream's headers come with its first token: once it holds a row of the batch.
        stream = open_stream(front, "/v1/completions", {**body, "stream": True})
        with lock:
            started.append(time.monotonic())
            streams.append(stream)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(started) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 4  # the batch is full; two requests wait for a slot
        reply = post(front, "/tokenize", {"model": FAULTY, "prompt": "Hello"})
        assert reply.status_code == 200, reply.text
        assert len(started) == 4  # answered while both still wait
    finally:
        for thread in threads:
            thread.join(60)
        for stream in streams:
            stream.close()


@pytest.mark.usefixtures("tiny_worker")
@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/tokenize", {"model": TINY}, 400, "prompt"),
        ("/tokenize", {"model": TINY, "prompt": "a", "messages": MESSAGES}, 400, "prompt"),
        ("/tokenize", {"model": "no-such-model", "prompt": "a"}, 404, "model"),
        ("/detokenize", {"model": TINY, "tokens": [1, 10**8]}, 400, "tokens"),
        ("/detokenize", {"model": TINY, "tokens": ["a"]}, 400, "tokens[0]"),
    ],
)
def test_bad_tokenize_requests_are_errors_naming_the_parameter(front, path, body, status, param):
    reply = post(front, path, body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param
