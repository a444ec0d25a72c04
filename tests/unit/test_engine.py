"""The batched engine alone, with the tiny model and an in-memory JobIO (no Redis, no Celery)."""

import pytest
import torch

from workers.engine import GenerationEngine, InvalidRequest


class MemoryIO:
    def __init__(self):
        self.events = []
        self.cancelled = set()
        self.rows_seen = []

    def exchange(self, events, job_ids):
        self.events.extend(events)
        return self.cancelled & set(job_ids)

    def of(self, job_id):
        return [e for e in self.events if e["job"] == job_id]

    def text(self, job_id, index=0):
        return "".join(
            e["text"] for e in self.of(job_id) if e["type"] == "token" and e["index"] == index
        )


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def engine(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4, name="tiny")


def job(job_id, prompt, **params):
    return {"id": job_id, "prompts": [prompt], "params": {"temperature": 0, **params}}


def run_until_done(engine, tickets):
    for _ in range(1000):
        if all(t.finished for t in tickets):
            return
        engine.step()
    raise AssertionError("jobs did not finish")


def test_jobs_joining_at_different_steps_match_their_solo_runs(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    specs = [
        ("a", "Once upon a time", 12),
        ("b", "The capital of France is", 5),
        ("c", "Hello", 20),
        ("d", "Redis publishes events; Celery workers run models", 9),
    ]
    solo = {}
    for job_id, prompt, n in specs:
        alone = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=1)
        run_until_done(alone, [alone.submit(job(job_id, prompt, max_tokens=n))])
        solo[job_id] = alone.io.text(job_id)

    batched = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4)
    tickets = []
    for job_id, prompt, n in specs:  # each joins one step after the previous one
        tickets.append(batched.submit(job(job_id, prompt, max_tokens=n)))
        batched.step()
    run_until_done(batched, tickets)
    # All at once, with a prefill budget of one token: each prompt is prefilled a token per
    # step (chunked prefill), one prompt after the other, while the rows that joined decode.
    budgeted = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4, prefill_tokens=1)
    tickets = [budgeted.submit(job(job_id, prompt, max_tokens=n)) for job_id, prompt, n in specs]
    a_tokens = len(tokenizer("Once upon a time")["input_ids"])
    for _ in range(a_tokens - 1):
        budgeted.step()
        assert (budgeted.load()["running"], budgeted.load()["waiting"]) == (0, 4)
    budgeted.step()  # the last chunk of the first prompt: it joins with its first token
    assert (budgeted.load()["running"], budgeted.load()["waiting"]) == (1, 3)
    run_until_done(budgeted, tickets)
    for job_id, _, _ in specs:
        assert budgeted.io.text(job_id) == solo[job_id]
    for job_id, _, n in specs:
        assert batched.io.text(job_id) == solo[job_id]
        done = batched.io.of(job_id)[-1]
        assert done["type"] == "done" and done["usage"]["completion_tokens"] == n


def test_events_are_numbered_and_end_with_one_terminal_event(engine):
    run_until_done(engine, [engine.submit(job("j", "Hello", max_tokens=6))])
    events = engine.io.of("j")
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count("done") == 1 and events[-1]["type"] == "done"
    assert events[-2]["finish_reason"] == "length"
    assert sum(len(e["token_ids"]) for e in events if e["type"] == "token") == 6


def test_stop_string_ends_the_sequence_and_is_not_in_the_text(engine):
    run_until_done(engine, [engine.submit(job("free", "Hello", max_tokens=30))])
    full = engine.io.text("free")
    stop = full[10:13]
    run_until_done(engine, [engine.submit(job("cut", "Hello", max_tokens=30, stop=[stop]))])
    assert engine.io.text("cut") == full[: full.index(stop)]
    assert engine.io.of("cut")[-2]["finish_reason"] == "stop"


def test_cancelled_job_leaves_the_batch_within_one_step(engine):
    tickets = [
        engine.submit(job("keep", "Hello", max_tokens=50)),
        engine.submit(job("drop", "Hello", max_tokens=50)),
    ]
    engine.step()
    assert engine.load()["running"] == 2
    engine.io.cancelled.add("drop")
    engine.step()
    assert engine.load()["running"] == 1
    assert tickets[1].finished and tickets[1].outcome == "cancelled"
    assert engine.io.of("drop")[-1]["code"] == "cancelled"
    run_until_done(engine, tickets)
    assert tickets[0].outcome == "done"


def test_seed_makes_sampling_reproducible(engine):
    sampled = {"temperature": 1.0, "max_tokens": 15, "seed": 42}
    tickets = [engine.submit({"id": i, "prompts": ["Hello"], "params": sampled}) for i in "xy"]
    other_seed = {**sampled, "seed": 1}
    tickets.append(engine.submit({"id": "z", "prompts": ["Hello"], "params": other_seed}))
    run_until_done(engine, tickets)
    assert engine.io.text("x") == engine.io.text("y") != engine.io.text("z")


def test_prompt_too_long_for_the_context_is_rejected_before_taking_a_slot(engine):
    long_prompt = "the quick brown fox " * 200
    with pytest.raises(InvalidRequest) as info:
        engine.submit(job("long", long_prompt))
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        engine.submit(job("over", "Hello", max_tokens=engine.context_length))
    assert (engine.load()["running"], engine.load()["waiting"]) == (0, 0)


def test_without_max_tokens_a_sequence_runs_to_the_context_limit(engine):
    run_until_done(engine, [engine.submit(job("all", "Hello"))])
    usage = engine.io.of("all")[-1]["usage"]
    assert usage["total_tokens"] == engine.context_length


def test_chat_messages_use_the_chat_template(engine):
    messages = [{"role": "user", "content": "Hello"}]
    ticket = engine.submit({"id": "c", "messages": messages, "params": {"max_tokens": 3}})
    run_until_done(engine, [ticket])
    tok = engine.tokenizer
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert engine.io.of("c")[-1]["usage"]["prompt_tokens"] == expected


def test_ignore_eos_runs_to_max_tokens(engine):
    run_until_done(engine, [engine.submit(job("probe", "Hello", max_tokens=1))])
    first = engine.io.of("probe")[0]["token_ids"][0]
    engine.output.eos_ids = {first}  # make the greedy first token the end of sequence
    run_until_done(engine, [engine.submit(job("eos", "Hello", max_tokens=8))])
    assert engine.io.of("eos")[-1]["usage"]["completion_tokens"] == 1
    assert engine.io.of("eos")[-2]["finish_reason"] == "stop"
    run_until_done(engine, [engine.submit(job("on", "Hello", max_tokens=8, ignore_eos=True))])
    assert engine.io.of("on")[-1]["usage"]["completion_tokens"] == 8


def test_job_cancelled_while_waiting_never_runs(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=1)
    tickets = [
        engine.submit(job("first", "Hello", max_tokens=30)),
        engine.submit(job("queued", "Hello", max_tokens=30)),
    ]
    engine.io.cancelled.add("queued")
    engine.step()
    assert tickets[1].outcome == "cancelled"
    assert [e["type"] for e in engine.io.of("queued")] == ["error"]
    run_until_done(engine, tickets[:1])
    assert (engine.load()["running"], engine.load()["waiting"]) == (0, 0)
