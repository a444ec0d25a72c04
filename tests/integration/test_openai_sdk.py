"""The API through the current openai SDK, against real workers (tiny model and MiniLM)."""

import math

import pytest

from tests.integration.conftest import EMBED_MODEL, TINY

pytestmark = pytest.mark.usefixtures("tiny_worker")

MESSAGES = [{"role": "user", "content": "Hello! What is your name?"}]


def test_models_list_and_retrieve(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert TINY in ids
    assert "tiny-offline" not in ids  # registered, but no live worker
    model = openai_client.models.retrieve(TINY)
    assert model.id == TINY and model.object == "model" and model.owned_by


def test_chat_completion(openai_client):
    reply = openai_client.chat.completions.create(
        model=TINY, messages=MESSAGES, max_tokens=7, temperature=0
    )
    assert reply.object == "chat.completion" and reply.model == TINY
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7


def test_chat_streaming_gives_the_same_text(openai_client):
    args = {"model": TINY, "messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    whole = openai_client.chat.completions.create(**args).choices[0].message.content
    chunks = list(openai_client.chat.completions.create(stream=True, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_max_completion_tokens_and_stop(openai_client):
    args = {"model": TINY, "messages": MESSAGES, "temperature": 0}
    full = openai_client.chat.completions.create(max_completion_tokens=20, **args)
    text = full.choices[0].message.content
    assert full.usage.completion_tokens == 20
    stop = text[5:8]
    cut = openai_client.chat.completions.create(max_tokens=20, stop=[stop], **args)
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_completion_with_several_prompts(openai_client):
    reply = openai_client.completions.create(
        model=TINY,
        prompt=["Once upon a time", "The capital of France is"],
        max_tokens=5,
        temperature=0,
    )
    assert reply.object == "text_completion"
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.finish_reason == "length" and c.text for c in reply.choices)
    assert reply.usage.completion_tokens == 10
    single = openai_client.completions.create(
        model=TINY, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert single.choices[0].text == reply.choices[1].text  # batching changes nothing


def test_completion_streaming(openai_client):
    args = {"model": TINY, "prompt": "Once upon a time", "max_tokens": 9, "temperature": 0}
    whole = openai_client.completions.create(**args).choices[0].text
    chunks = list(openai_client.completions.create(stream=True, **args))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"


def test_sampling_with_a_seed_is_reproducible(openai_client):
    args = {"model": TINY, "prompt": "Hello", "max_tokens": 12, "temperature": 1.0, "seed": 5}
    first = openai_client.completions.create(**args).choices[0].text
    assert openai_client.completions.create(**args).choices[0].text == first


@pytest.mark.usefixtures("embed_worker")
def test_embeddings_are_unit_vectors_in_sdk_default_and_float_format(openai_client):
    texts = ["Hello world!", "A second, longer sentence about queues."]
    default = openai_client.embeddings.create(model=EMBED_MODEL, input=texts)  # SDK asks base64
    floats = openai_client.embeddings.create(
        model=EMBED_MODEL, input=texts, encoding_format="float"
    )
    for reply in (default, floats):
        assert [d.index for d in reply.data] == [0, 1]
        for item in reply.data:
            assert len(item.embedding) == 384
            assert math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-4)
        assert reply.usage.prompt_tokens == reply.usage.total_tokens > 5
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    single = openai_client.embeddings.create(model=EMBED_MODEL, input="Hello world!")
    assert single.data[0].embedding == pytest.approx(default.data[0].embedding, abs=1e-5)


def test_a_chat_model_answers_embeddings_too(openai_client):
    """As FastChat's workers do: the mean of the last hidden states, unit length."""
    texts = ["Hello world!", "A second, longer sentence about queues."]
    reply = openai_client.embeddings.create(model=TINY, input=texts, encoding_format="float")
    assert reply.model == TINY and [d.index for d in reply.data] == [0, 1]
    for item in reply.data:
        assert len(item.embedding) == 64  # the tiny model's hidden size
        assert math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-4)
    assert reply.data[0].embedding != pytest.approx(reply.data[1].embedding, abs=1e-3)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 5
    single = openai_client.embeddings.create(model=TINY, input=texts[1], encoding_format="float")
    assert single.data[0].embedding == pytest.approx(reply.data[1].embedding, abs=1e-5)
