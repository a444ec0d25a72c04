"""The prefix cache and chunked prefill in the engine, with the tiny model (fp32): the same greedy
outputs with and without them, ``cached_tokens`` in the usage, eviction under the budget, no
sharing across adapters, constrained rows unaffected, and running streams that keep advancing
while a long prompt is prefilled."""

import json

import jsonschema
import pytest
import torch

from tests.unit.test_constrained import PERSON
from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.engine import GenerationEngine
from workers.engine.prefix import BLOCK, PrefixCache

SYSTEM = "You are a careful assistant. Answer in one short sentence, and be kind. " * 4
QUESTIONS = ["What is Redis?", "Why is the sky blue?", "Name a prime number."]
MB = 1024 * 1024


@pytest.fixture(scope="module")
def model_and_tokenizer(long_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(long_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(long_model_dir)


@pytest.fixture
def make(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer

    def make(**kwargs):
        return GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4, **kwargs)

    return make


def usage(engine, job_id):
    return engine.io.of(job_id)[-1]["usage"]


def test_a_shared_prefix_is_reused_with_the_same_output(make, model_and_tokenizer):
    tokenizer = model_and_tokenizer[1]
    plain, cached = make(prefix_cache_bytes=0), make(prefix_cache_bytes=64 * MB)
    prompts = {f"q{i}": SYSTEM + q for i, q in enumerate(QUESTIONS)}
    for engine in (plain, cached):
        for job_id, prompt in prompts.items():  # one after the other: each can reuse the first
            run_until_done(engine, [engine.submit(job(job_id, prompt, max_tokens=12))])
    system_tokens = len(tokenizer(SYSTEM)["input_ids"])
    for job_id in prompts:
        assert cached.io.text(job_id) == plain.io.text(job_id)
        assert usage(plain, job_id)["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage(cached, "q0")["prompt_tokens_details"]["cached_tokens"] == 0
    for job_id in ("q1", "q2"):
        reused = usage(cached, job_id)["prompt_tokens_details"]["cached_tokens"]
        assert reused % BLOCK == 0 and system_tokens - BLOCK <= reused <= system_tokens
        assert usage(cached, job_id)["prompt_tokens"] == usage(plain, job_id)["prompt_tokens"]


def test_prompts_with_different_reused_lengths_share_one_prefill(make):
    plain, cached = make(prefix_cache_bytes=0), make(prefix_cache_bytes=64 * MB)
    run_until_done(cached, [cached.submit(job("warm", SYSTEM + "Hello", max_tokens=2))])
    # Together: a long reused prefix, a short prompt with none, and a repeat of the whole prompt.
    specs = {"long": SYSTEM + QUESTIONS[0], "short": "Hello there", "again": SYSTEM + "Hello"}
    for engine in (plain, cached):
        tickets = [engine.submit(job(i, p, max_tokens=10)) for i, p in specs.items()]
        engine.step()
        assert engine.load()["running"] == 3  # one prefill pass for all three
        run_until_done(engine, tickets)
    for job_id in specs:
        assert cached.io.text(job_id) == plain.io.text(job_id)
    assert usage(cached, "short")["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage(cached, "again")["prompt_tokens_details"]["cached_tokens"] > 0


def test_the_cache_keeps_to_its_budget_least_recently_used_out_first(make):
    probe = make(prefix_cache_bytes=64 * MB)
    for job_id in ("a", "again"):
        run_until_done(probe, [probe.submit(job(job_id, SYSTEM + "A", max_tokens=1))])
    whole = usage(probe, "again")["prompt_tokens_details"]["cached_tokens"]
    one_prompt = probe.prefix.used  # the bytes of one prompt's blocks
    engine = make(prefix_cache_bytes=one_prompt + one_prompt // 2)
    other = "Tell me everything about the history of message queues and brokers. " * 4
    for job_id, prompt in [("a", SYSTEM + "A"), ("b", other + "B"), ("a2", SYSTEM + "A")]:
        run_until_done(engine, [engine.submit(job(job_id, prompt, max_tokens=1))])
        assert 0 < engine.prefix.used <= engine.prefix.budget
    # b pushed out the blocks of a used least recently: those at its end. Its start, which more
    # prompts share, is still there.
    assert 0 < usage(engine, "a2")["prompt_tokens_details"]["cached_tokens"] < whole


def test_adapters_never_share_cached_blocks():
    cache = PrefixCache(budget_bytes=MB)
    tokens = list(range(3 * BLOCK + 1))
    kv = torch.randn(2, 2, 1, len(tokens), 4)
    cache.store(tokens, "adapter-a", kv)
    assert cache.lookup(tokens, "adapter-b") == (0, [])
    length, found = cache.lookup(tokens, "adapter-a")
    assert length == 3 * BLOCK and torch.equal(torch.cat(found, dim=3), kv[:, :, :, : 3 * BLOCK])
    # A prompt that differs in its second block reuses only the first.
    changed = tokens[:BLOCK] + [t + 1 for t in tokens[BLOCK:]]
    assert cache.lookup(changed, "adapter-a")[0] == BLOCK


def test_constrained_rows_are_unaffected_by_a_reused_prefix(make):
    plain, cached = make(prefix_cache_bytes=0), make(prefix_cache_bytes=64 * MB)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}]
    body = {"messages": messages, "json_schema": PERSON, "params": {"temperature": 0}}
    for engine in (plain, cached):
        for job_id in ("first", "second"):
            body["params"]["max_tokens"] = 200
            run_until_done(engine, [engine.submit({"id": job_id, **body})])
    assert usage(cached, "second")["prompt_tokens_details"]["cached_tokens"] > 0
    for job_id in ("first", "second"):
        jsonschema.validate(json.loads(cached.io.text(job_id)), PERSON)
        assert cached.io.text(job_id) == plain.io.text(job_id)


def test_running_streams_advance_every_step_while_a_long_prompt_is_prefilled(make):
    solo = make(prefix_cache_bytes=0)
    run_until_done(solo, [solo.submit(job("long", SYSTEM * 2, max_tokens=5))])
    engine = make(prefix_cache_bytes=0, prefill_tokens=16)
    stream = engine.submit(job("stream", "Hello", max_tokens=200, ignore_eos=True))
    engine.step()
    long = engine.submit(job("long", SYSTEM * 2, max_tokens=5))
    steps = 0
    running = engine._rows[0]
    while not engine.io.of("long"):
        before = len(running.generated)
        engine.step()
        steps += 1
        assert len(running.generated) == before + 1  # a token every step, no stall
    assert steps > 3  # the long prompt took several chunks
    run_until_done(engine, [stream, long])
    assert engine.io.text("long") == solo.io.text("long")


def test_decode_steps_and_leaving_rows_do_not_reallocate_the_batch(make):
    engine = make(prefix_cache_bytes=0)
    lengths = [30, 12, 45, 20]
    tickets = [
        engine.submit(job(f"r{i}", f"Row {i} says", max_tokens=n, ignore_eos=True))
        for i, n in enumerate(lengths)
    ]
    engine.step()  # all four prefilled together
    [group] = engine._running.groups
    layer = group.batch.cache.layers[0]
    buffer, reallocations = layer.key_buffer.data_ptr(), 0
    while not all(t.finished for t in tickets):
        engine.step()
        if engine._running.groups and layer.key_buffer.data_ptr() != buffer:
            reallocations, buffer = reallocations + 1, layer.key_buffer.data_ptr()
    # 45 steps for columns that started near 64 (headroom grows by half): at most one regrowth.
    assert reallocations <= 1
    solo = make(prefix_cache_bytes=0)
    for i, n in enumerate(lengths):
        run_until_done(
            solo, [solo.submit(job(f"r{i}", f"Row {i} says", max_tokens=n, ignore_eos=True))]
        )
        assert engine.io.text(f"r{i}") == solo.io.text(f"r{i}")


def test_a_chunked_prompt_keeps_its_blocks_chunk_by_chunk(make):
    engine = make(prefix_cache_bytes=64 * MB, prefill_tokens=16)
    stream = engine.submit(job("stream", "Hello", max_tokens=200, ignore_eos=True))
    engine.step()
    long = engine.submit(job("long", SYSTEM * 2, max_tokens=5))
    [waiting] = engine._scheduler.waiting()
    prompt, kept = waiting.context(), []
    while not engine.io.of("long"):
        engine.step()
        kept.append(engine.prefix.lookup(prompt, "__base__")[0])
    # Blocks were kept while the prompt was still being prefilled, a chunk's worth per step.
    assert 0 < kept[len(kept) // 2] < kept[-1]
    assert kept[-1] == (len(prompt) - 1) // BLOCK * BLOCK
    again = engine.submit(job("again", SYSTEM * 2, max_tokens=5))
    run_until_done(engine, [stream, long, again])
    assert usage(engine, "again")["prompt_tokens_details"]["cached_tokens"] == kept[-1]
    assert engine.io.text("again") == engine.io.text("long")
