"""The two real default models, loaded from their wheels with HF_HUB_OFFLINE=1."""

import math
import time

import pytest

from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.real_models

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_smollm2_answers_paris(chat_worker, openai_client):
    reply = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    stream = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream)
    assert streamed == reply.choices[0].message.content


def test_smollm2_completion(chat_worker, openai_client):
    reply = openai_client.completions.create(
        model=CHAT_MODEL, prompt="Once upon a time", max_tokens=41, temperature=0.5
    )
    assert reply.choices[0].text and reply.usage.completion_tokens <= 41


def test_smollm2_answers_embeddings_as_on_fastchats_page(chat_worker, openai_client):
    reply = openai_client.embeddings.create(
        model=CHAT_MODEL, input="Hello world!", encoding_format="float"
    )
    vector = reply.data[0].embedding
    assert len(vector) == 576  # SmolLM2-135M's hidden size
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
    assert reply.usage.prompt_tokens == 3


def test_worker_logs_loading_and_ready(chat_worker):
    log = chat_worker.log.read_text()
    assert f"loading model {CHAT_MODEL}" in log
    assert f"model {CHAT_MODEL} ready in" in log


def test_minilm_puts_similar_sentences_closer(embed_worker, openai_client):
    texts = ["The cat sits on the mat.", "A cat is sitting on a rug.", "Stock prices fell today."]
    vectors = [
        d.embedding for d in openai_client.embeddings.create(model=EMBED_MODEL, input=texts).data
    ]

    def cosine(a, b):
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > 0.5 > cosine(vectors[0], vectors[2])


def test_second_start_loads_the_converted_copy(stack, chat_worker, model_cache_dir):
    """The first worker converted the GGUF file into the cache; the next start only loads it."""
    from devtools.localstack import start_worker, stop_process

    assert any((model_cache_dir / "gguf").iterdir())
    log = stack.workdir / "second-chat-worker.log"
    second = start_worker([CHAT_MODEL], stack.env, log=log)
    try:
        for _ in range(1200):
            text = log.read_text() if log.exists() else ""
            if "ready: serving" in text or second.poll() is not None:
                break
            time.sleep(0.1)
        assert "ready: serving" in text
        assert "loading the converted copy" in text and "converting" not in text
    finally:
        stop_process(second)


def test_worker_concurrency_is_the_engine_batch_size(chat_worker, tiny_worker):
    assert f"concurrency 32 for queues {CHAT_MODEL}" in chat_worker.log.read_text()
    assert "concurrency 4 for queues tiny-chat" in tiny_worker.log.read_text()


def test_smollm2_gives_valid_json_for_a_schema_and_calls_tools(chat_worker, openai_client):
    """The 135M model, sampled: every reply validates, because the grammar allows nothing else."""
    import json

    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "maxLength": 30},
            "population": {"type": "integer", "minimum": 0, "maximum": 100000000},
        },
        "required": ["city", "country", "population"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}
    for seed in range(3):
        reply = openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Describe Paris as JSON."}],
            response_format=fmt,
            seed=seed,
            max_tokens=100,
        )
        jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
        assert reply.choices[0].finish_reason == "stop"
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    reply = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],
        tool_choice="required",
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls
    print(f"\nSmolLM2's calls: {[(c.function.name, c.function.arguments) for c in calls]}")
    assert calls and reply.choices[0].finish_reason == "tool_calls"
    for call in calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
