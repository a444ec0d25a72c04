"""Every generation and embedding parameter through the current openai SDK, sync and async,
streaming and not (tiny model for generation, MiniLM for embeddings)."""

import asyncio
import base64
import math
import struct

import pytest

from config.keys import heartbeat_key
from config.protocol import decode
from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, TINY
from tests.integration.http import get, post

pytestmark = pytest.mark.usefixtures("tiny_worker")

CHAT = [{"role": "user", "content": "Hello! What is your name?"}]
GREEDY = {"model": TINY, "temperature": 0}
# Logprob tests use the real model: the tiny one's tokens are mostly lone bytes, which all read
# as U+FFFD and collide as keys of the completions API's top_logprobs.
REAL = {"model": CHAT_MODEL, "temperature": 0}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def async_client(front):
    from openai import AsyncOpenAI

    return lambda: AsyncOpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0)


def printable(text: str) -> str:
    """Text without U+FFFD: the tiny model emits lone bytes, each its own replacement character
    as a token but merged with its neighbours in the decoded text."""
    return text.replace("\ufffd", "")


def tokens(client, **args):
    """The generated tokens (from logprobs) of a greedy completion of 'Hello'."""
    reply = client.completions.create(prompt="Hello", logprobs=0, max_tokens=20, **GREEDY, **args)
    return reply.choices[0].logprobs.tokens


def stream_chat(client, **args):
    chunks = list(client.chat.completions.create(messages=CHAT, stream=True, **args))
    by_index = {}
    for chunk in chunks:
        for choice in chunk.choices:
            by_index.setdefault(choice.index, []).append(choice)
    return chunks, by_index


# -- n ----------------------------------------------------------------------------------------


def test_n_choices_sampled_in_one_job(openai_client):
    reply = openai_client.chat.completions.create(
        model=TINY,
        messages=CHAT,
        n=3,
        max_tokens=8,
        temperature=1.0,
        seed=3,
        extra_body={"ignore_eos": True},  # each choice runs to max_tokens, whatever it draws
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1  # different samples
    single = openai_client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=8)
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert reply.usage.completion_tokens == 24
    greedy = openai_client.chat.completions.create(messages=CHAT, n=2, max_tokens=8, **GREEDY)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content


def test_n_streaming_tags_every_chunk_with_its_choice(openai_client):
    _, by_index = stream_chat(openai_client, n=2, max_tokens=6, **GREEDY)
    assert set(by_index) == {0, 1}
    texts = ["".join(c.delta.content or "" for c in by_index[i]) for i in (0, 1)]
    assert texts[0] == texts[1] and texts[0]
    assert all(by_index[i][-1].finish_reason == "length" for i in (0, 1))


def test_n_with_several_prompts_orders_choices_prompt_by_prompt(openai_client):
    prompts = ["Once upon a time", "The capital of France is"]
    reply = openai_client.completions.create(prompt=prompts, n=2, max_tokens=4, **GREEDY)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    texts = [c.text for c in reply.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]


# -- penalties and logit_bias -----------------------------------------------------------------


@pytest.mark.parametrize(
    "penalty",
    [
        {"frequency_penalty": 2.0},
        {"presence_penalty": 2.0},
        {"extra_body": {"repetition_penalty": 50.0}},
    ],
)
def test_penalties_stop_repetition(openai_client, penalty):
    plain = tokens(openai_client)
    assert len(set(plain)) < len(plain)  # the tiny model loops without a penalty
    penalized = tokens(openai_client, **penalty)
    assert len(set(penalized)) > len(set(plain))


def test_penalty_out_of_range_is_a_400(front):
    status, _, body = post(
        front, "/v1/completions", {"model": TINY, "prompt": "x", "presence_penalty": 2.5}
    )
    assert status == 400 and body["error"]["param"] == "presence_penalty"


def test_logit_bias_forces_or_bans_tokens(openai_client, tokenizer, tiny_model_dir):
    forced = tokenizer("Paris", add_special_tokens=False)["input_ids"][0]
    piece = tokenizer.decode([forced])
    reply = openai_client.completions.create(
        prompt="Hello", max_tokens=5, logit_bias={str(forced): 100}, **GREEDY
    )
    assert reply.choices[0].text == piece * 5
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = tokenizer("Hello")["input_ids"]
    first_id = int(model(torch.tensor([prompt])).logits[0, -1].argmax())  # the greedy choice
    args = {"prompt": "Hello", "max_tokens": 5, **GREEDY}
    plain = openai_client.completions.create(**args).choices[0].text
    banned = openai_client.completions.create(logit_bias={str(first_id): -100}, **args)
    assert banned.choices[0].text != plain


def test_logit_bias_keys_must_be_token_ids(front):
    status, _, body = post(
        front, "/v1/completions", {"model": TINY, "prompt": "x", "logit_bias": {"abc": 1}}
    )
    assert status == 400 and body["error"]["param"] == "logit_bias"


# -- logprobs ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("chat_worker")
def test_completion_logprobs(openai_client):
    reply = openai_client.completions.create(prompt="Hello", max_tokens=6, logprobs=3, **REAL)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert printable("".join(lp.tokens)) == printable(choice.text)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0 and len(top) == 3
        assert math.isclose(logprob, max(top.values()), abs_tol=1e-5)  # greedy: the best one
        assert top[token] == pytest.approx(logprob)


def test_chat_logprobs_streamed_and_not(openai_client, chat_worker, redis_client):
    args = {"max_tokens": 5, "logprobs": True, "top_logprobs": 2, **REAL}
    # Asked twice: whatever the prefix cache held of this prompt before (earlier tests ask the
    # chat model the same), the second and the streamed request find all of it there, and so
    # prefill alike (a prompt prefilled over more or fewer cached blocks sums in another order,
    # which a near tie in bfloat16 may turn into another token).
    openai_client.chat.completions.create(messages=CHAT, **args)
    reply = openai_client.chat.completions.create(messages=CHAT, **args)
    content = reply.choices[0].logprobs.content
    assert len(content) == 5 and all(len(e.top_logprobs) == 2 for e in content)
    assert printable("".join(e.token for e in content)) == printable(
        reply.choices[0].message.content
    )
    assert all(bytes(e.bytes) == e.token.encode() for e in content)
    _, by_index = stream_chat(openai_client, **args)
    streamed = [e for c in by_index[0] if c.logprobs for e in c.logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in content]
    # The second request reuses the first's prompt from the prefix cache: the same tokens, and
    # logprobs equal up to the order of sums (a prefill over a cached prefix adds them up in
    # another order): in float32 to 1e-5, in bfloat16 (the default on a CPU with bfloat16 units)
    # to its three significant digits.
    heartbeat = decode(redis_client.get(heartbeat_key(chat_worker.worker_id)))
    dtype = heartbeat["load"][CHAT_MODEL]["dtype"]
    tolerance = {"abs": 1e-5, "rel": 1e-4} if dtype == "float32" else {"abs": 0.1}
    expected = [e.logprob for e in content]
    assert [e.logprob for e in streamed] == pytest.approx(expected, **tolerance)


def test_chat_logprob_bytes_rebuild_characters_split_across_tokens(openai_client, tokenizer):
    args = {"max_tokens": 20, "logprobs": True, "top_logprobs": 20, **GREEDY}
    reply = openai_client.chat.completions.create(messages=CHAT, **args)
    content = reply.choices[0].logprobs.content
    entries = [e for chosen in content for e in (chosen, *chosen.top_logprobs)]
    partial = [e for e in entries if e.token == "\ufffd"]
    assert partial  # the tiny model's vocabulary is mostly lone bytes of characters
    assert all(e.bytes != list("\ufffd".encode()) for e in partial)  # their own bytes instead
    for entry in entries:
        try:
            assert bytes(entry.bytes).decode() == entry.token
        except UnicodeDecodeError:
            assert entry.token == "\ufffd"
    # Joined, the bytes are the message's text (which leaves special tokens out), whatever
    # characters the tokens cut through.
    special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    joined = b"".join(bytes(e.bytes) for e in content if e.token not in special)
    assert joined.decode("utf-8", "replace") == reply.choices[0].message.content


def test_top_logprobs_bounds(front):
    body = {"model": TINY, "messages": CHAT, "logprobs": True, "top_logprobs": 21}
    status, _, reply = post(front, "/v1/chat/completions", body)
    assert status == 400 and reply["error"]["param"] == "top_logprobs"
    status, _, reply = post(
        front, "/v1/chat/completions", {**body, "logprobs": False, "top_logprobs": 2}
    )
    assert status == 400 and reply["error"]["param"] == "top_logprobs"


# -- echo, usage in streams, context, token-id prompts ----------------------------------------


def test_echo_returns_the_prompt_first_with_its_logprobs(openai_client):
    reply = openai_client.completions.create(
        prompt="Once upon a time", max_tokens=3, echo=True, logprobs=1, **GREEDY
    )
    choice = reply.choices[0]
    assert choice.text.startswith("Once upon a time") and len(choice.text) > 16
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert printable("".join(lp.tokens)) == printable(choice.text)
    scored = openai_client.completions.create(
        prompt="Once upon a time", max_tokens=0, echo=True, logprobs=0, **GREEDY
    )
    assert scored.choices[0].text == "Once upon a time"
    assert scored.usage.completion_tokens == 0
    assert scored.choices[0].logprobs.token_logprobs[1:] == pytest.approx(
        lp.token_logprobs[1 : len(scored.choices[0].logprobs.tokens)]
    )
    streamed = list(
        openai_client.completions.create(
            prompt="Once upon a time", max_tokens=3, echo=True, stream=True, **GREEDY
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == choice.text


def test_stream_options_include_usage(openai_client):
    chunks, _ = stream_chat(
        openai_client, max_tokens=4, stream_options={"include_usage": True}, **GREEDY
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    plain, _ = stream_chat(openai_client, max_tokens=4, **GREEDY)
    assert all(c.usage is None and c.choices for c in plain)


def test_context_length_exceeded_gives_the_numbers(front):
    body = {"model": TINY, "prompt": "Hello", "max_tokens": 1000}
    status, _, reply = post(front, "/v1/completions", body)
    assert status == 400 and reply["error"]["code"] == "context_length_exceeded"
    assert "256" in reply["error"]["message"] and "1000" in reply["error"]["message"]


def test_prompt_as_token_ids(openai_client, tokenizer):
    ids = tokenizer("The capital of France is")["input_ids"]
    text = (
        openai_client.completions.create(prompt="The capital of France is", max_tokens=5, **GREEDY)
        .choices[0]
        .text
    )
    one = openai_client.completions.create(prompt=ids, max_tokens=5, **GREEDY)
    assert one.choices[0].text == text and one.usage.prompt_tokens == len(ids)
    two = openai_client.completions.create(prompt=[ids, ids[:3]], max_tokens=5, **GREEDY)
    assert [c.index for c in two.choices] == [0, 1] and two.choices[0].text == text


def test_out_of_vocabulary_token_id_is_a_400(front):
    status, _, body = post(front, "/v1/completions", {"model": TINY, "prompt": [1, 99999]})
    assert status == 400 and body["error"]["param"] == "prompt"


def test_user_is_accepted_and_recorded(openai_client, stack):
    openai_client.chat.completions.create(messages=CHAT, max_tokens=2, user="alice-42", **GREEDY)
    logs = "".join(p.read_text() for p in stack.workdir.glob("front-*.log"))
    assert "(user alice-42)" in logs


# -- async client -------------------------------------------------------------------------------


def test_async_client_chat_completions_and_embeddings(async_client, embed_worker):
    async def scenario():
        client = async_client()
        chat = await client.chat.completions.create(messages=CHAT, max_tokens=6, **GREEDY)
        stream = await client.chat.completions.create(
            messages=CHAT, max_tokens=6, stream=True, **GREEDY
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream])
        completion = await client.completions.create(
            prompt="Hello", max_tokens=4, logprobs=1, **GREEDY
        )
        embedding = await client.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
        many = await asyncio.gather(
            *[
                client.completions.create(prompt=f"Hello {i}", max_tokens=4, n=2, **GREEDY)
                for i in range(6)
            ]
        )
        await client.close()
        return chat, streamed, completion, embedding, many

    chat, streamed, completion, embedding, many = asyncio.run(scenario())
    assert streamed == chat.choices[0].message.content
    assert len(completion.choices[0].logprobs.tokens) == 4
    assert len(embedding.data) == 2
    assert all(len(r.choices) == 2 for r in many)


# -- embeddings -------------------------------------------------------------------------------


@pytest.mark.usefixtures("embed_worker")
def test_embedding_token_ids_base64_and_dimensions(openai_client, front):
    text = openai_client.embeddings.create(model=EMBED_MODEL, input="hello world")
    from transformers import AutoTokenizer

    from config.registry import load_registry, resolve_source

    minilm = AutoTokenizer.from_pretrained(resolve_source(load_registry()[EMBED_MODEL]))
    ids = minilm("hello world", add_special_tokens=False)["input_ids"]
    by_ids = openai_client.embeddings.create(model=EMBED_MODEL, input=[ids, ids])
    assert len(by_ids.data) == 2
    assert by_ids.data[0].embedding == pytest.approx(text.data[0].embedding, abs=1e-4)
    raw = openai_client.embeddings.create(
        model=EMBED_MODEL, input="hello world", encoding_format="base64"
    )
    # Asked for explicitly, base64 comes back as the string itself: little-endian float32.
    decoded = struct.unpack(f"<{384}f", base64.b64decode(raw.data[0].embedding))
    assert list(decoded) == pytest.approx(text.data[0].embedding, abs=1e-6)
    status, _, body = post(
        front, "/v1/embeddings", {"model": EMBED_MODEL, "input": "x", "dimensions": 64}
    )
    assert status == 400 and body["error"]["param"] == "dimensions"
    # Token ids past the vocabulary (schemathesis found these were a 500).
    body = {"model": EMBED_MODEL, "input": [[ids[0], 10**12]]}
    status, _, body = post(front, "/v1/embeddings", body)
    assert status == 400 and body["error"]["param"] == "input"
    assert "Token ids" in body["error"]["message"]


@pytest.mark.usefixtures("embed_worker")
def test_legacy_engines_embeddings_path(front, openai_client):
    status, _, body = post(front, f"/v1/engines/{EMBED_MODEL}/embeddings", {"input": "hello"})
    assert status == 200 and body["model"] == EMBED_MODEL
    direct = openai_client.embeddings.create(model=EMBED_MODEL, input="hello")
    assert body["data"][0]["embedding"] == pytest.approx(direct.data[0].embedding, abs=1e-5)


# -- models and edits -------------------------------------------------------------------------


def test_model_details_have_fastchat_permissions(front):
    status, _, body = get(front, f"/v1/models/{TINY}")
    assert status == 200
    assert body["created"] > 0 and body["owned_by"] and body["root"] == TINY
    permission = body["permission"][0]
    assert permission["object"] == "model_permission"
    assert permission["allow_sampling"] and permission["allow_logprobs"]


def test_edits(front):
    body = {
        "model": TINY,
        "input": "helo world",
        "instruction": "Fix the spelling.",
        "n": 2,
        "temperature": 0,
        "max_tokens": 6,
    }
    status, _, reply = post(front, "/v1/edits", body)
    assert status == 200 and reply["object"] == "edit"
    assert [c["index"] for c in reply["choices"]] == [0, 1] and reply["choices"][0]["text"]
    assert reply["usage"]["completion_tokens"] == 12
    status, _, reply = post(front, "/v1/edits", {"model": TINY, "input": "x"})
    assert status == 400 and reply["error"]["param"] == "instruction"


def test_a_model_that_does_not_think_ignores_the_reasoning_controls(openai_client):
    reply = openai_client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        reasoning_effort="none",
        extra_body={"thinking_token_budget": 0},
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
