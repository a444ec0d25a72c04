"""OpenAI's defaults and the per-request caps, checked before anything is queued (a request that
gets past the caps fails later, for naming no model)."""

import pytest

from app import create_app
from app.schemas import CompletionSchema, load_request


@pytest.fixture
def capped():
    config = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "MAX_REQUEST_CHOICES": 8,
        "MAX_EMBEDDING_INPUTS": 3,
        "MAX_REQUEST_TOKENS": 10,
    }
    return create_app(config).test_client()


def error(response, status=400):
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


def test_completions_default_to_16_tokens_as_openai():
    schema = CompletionSchema()
    assert schema.sampling(load_request(schema, {"model": "m", "prompt": "x"}))["max_tokens"] == 16
    body = {"model": "m", "prompt": "x", "max_tokens": None}
    assert schema.sampling(load_request(schema, body))["max_tokens"] == 16
    body["max_tokens"] = 300
    assert schema.sampling(load_request(schema, body))["max_tokens"] == 300


def test_prompts_times_n_is_capped(capped):
    body = {"model": "m", "prompt": ["a"] * 3, "n": 3}
    err = error(capped.post("/v1/completions", json=body))
    assert err["code"] == "too_many_choices" and err["param"] == "prompt"
    assert "9 choices" in err["message"] and "at most 8" in err["message"]
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 9}
    assert error(capped.post("/v1/chat/completions", json=chat))["param"] == "n"


def test_within_the_caps_a_request_goes_on(capped):
    body = {"model": "m", "prompt": ["a", "b"], "n": 4}
    # Past the caps, the model is looked up: "m" is not in the registry, so among the adapters
    # loaded at run time, in a Redis this app cannot reach.
    assert error(capped.post("/v1/completions", json=body), 503)["code"] == "queue_unavailable"


def test_embedding_inputs_are_capped(capped):
    err = error(capped.post("/v1/embeddings", json={"model": "m", "input": ["a"] * 4}))
    assert err["code"] == "too_many_inputs" and "at most 3" in err["message"]


def test_token_id_prompts_are_counted_at_the_front(capped):
    err = error(capped.post("/v1/completions", json={"model": "m", "prompt": [[1] * 6, [2] * 5]}))
    assert err["code"] == "max_tokens_per_request" and "11 prompt tokens" in err["message"]
    err = error(capped.post("/v1/embeddings", json={"model": "m", "input": [5] * 11}))
    assert err["code"] == "max_tokens_per_request" and err["param"] == "input"


def test_the_defaults_are_openai_s():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert app.config["MAX_EMBEDDING_INPUTS"] == 2048
    assert app.config["MAX_REQUEST_TOKENS"] == 300_000
