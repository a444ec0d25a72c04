"""Priorities in the engine: interactive sequences first, bulk ones in the capacity left, bulk rows
above their share preempted for waiting interactive ones and resumed exactly; interactive rows
shared between API keys by weight."""

from types import SimpleNamespace

import pytest

from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.engine import GenerationEngine
from workers.engine.scheduler import Scheduler


@pytest.fixture
def make(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer

    def make(**kwargs):
        return GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4, **kwargs)

    return make


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def bulk(job_id, prompt, **params):
    return {**job(job_id, prompt, **params), "priority": "bulk"}


PROMPTS = ["Once upon a time", "The capital of France is", "Hello", "Redis publishes events"]


def test_an_interactive_request_waits_at_most_one_step_behind_bulk_rows(make):
    solo = make()
    expected = {}
    for i, prompt in enumerate(PROMPTS):
        run_until_done(solo, [solo.submit(job(f"b{i}", prompt, max_tokens=30))])
        expected[f"b{i}"] = solo.io.text(f"b{i}")
    engine = make(bulk_share=0.25)  # one of the four slots stays bulk beside interactive work
    tickets = [engine.submit(bulk(f"b{i}", p, max_tokens=30)) for i, p in enumerate(PROMPTS)]
    engine.step()
    assert engine.load()["running"] == 4 and engine.bulk_room() == 0
    urgent = engine.submit(job("urgent", "Hello", max_tokens=5))
    assert engine.bulk_room() == 0  # an interactive sequence waits: no bulk is taken
    engine.step()  # bulk rows above the share give way; the interactive one joins at once
    assert "urgent" in [r.job.id for r in engine._rows]  # prefilled this step: its first token
    assert [r.bulk for r in engine._rows] == [True, False]
    run_until_done(engine, tickets + [urgent])
    for job_id, text in expected.items():  # the preempted row resumed exactly where it was
        assert engine.io.text(job_id) == text


def test_bulk_keeps_its_share_while_interactive_requests_wait(make):
    engine = make(bulk_share=0.5)
    for i in range(4):
        engine.submit(bulk(f"b{i}", "Hello", max_tokens=40))
    engine.step()
    for i in range(4):
        engine.submit(job(f"i{i}", "Hi", max_tokens=40))
    engine.step()
    rows = engine._rows
    assert sum(r.bulk for r in rows) == 2 and sum(not r.bulk for r in rows) == 2


def test_bulk_fills_idle_capacity_and_keeps_its_share_beside_interactive_work(make):
    engine = make(bulk_share=0.5)
    assert engine.bulk_room() == 4  # nothing else: the whole batch
    engine.submit(job("i", "Hi", max_tokens=20))
    assert engine.bulk_room() == 0  # interactive work waits
    engine.step()
    assert engine.bulk_room() == 2  # interactive work runs: the bulk share
    engine.submit(bulk("b", "Hi", max_tokens=20))
    assert engine.bulk_room() == 1
    run_until_done(engine, [engine.submit(job("j", "Hi", max_tokens=1))])
    while engine.load()["running"]:
        engine.step()
    assert engine.bulk_room() == 4


# -- fair shares between API keys (the scheduler alone) ----------------------------------------


def waiting(key, weight=1.0, part=None, job=None):
    return SimpleNamespace(
        bulk=False,
        finish_reason=None,
        part=part,
        key=key,
        weight=weight,
        job=job or object(),
        context=lambda: [1],
    )


def take_keys(scheduler, rows, size=8):
    return [s.key for s in scheduler.take(rows, 1000, lambda s: (1, False))][:size]


def test_waiting_sequences_join_round_the_keys_fewest_rows_first():
    scheduler = Scheduler(max_batch_size=8, bulk_share=0.25)
    scheduler.add([waiting("a") for _ in range(4)] + [waiting("b") for _ in range(2)])
    rows = [waiting("a"), waiting("a")]  # a already holds two rows
    assert take_keys(scheduler, rows) == ["b", "b", "a", "a", "a", "a"]


def test_a_keys_weight_is_its_share_of_the_rows():
    scheduler = Scheduler(max_batch_size=6, bulk_share=0.25)
    scheduler.add([waiting("a", weight=2.0) for _ in range(6)] + [waiting("b") for _ in range(6)])
    assert sorted(take_keys(scheduler, [])) == ["a"] * 4 + ["b"] * 2


def test_one_key_keeps_its_order_and_a_prompt_part_way_through_its_prefill_stays_first():
    scheduler = Scheduler(max_batch_size=8, bulk_share=0.25)
    alone = [waiting("a") for _ in range(3)]
    scheduler.add(alone)
    assert scheduler.take([], 1000, lambda s: (1, False)) == alone
    chunked = waiting("a", part=object())
    scheduler.add([waiting("b"), waiting("b"), waiting("a")])
    scheduler.resume_first(chunked)
    # a holds more rows, so b's go before a's other prompt; the chunked one goes on first.
    taken = scheduler.take([waiting("a")] * 3, 1000, lambda s: (1, False))
    assert taken[0] is chunked
    assert [s.key for s in taken[1:]] == ["b", "b", "a"]


def test_a_jobs_choices_join_together():
    scheduler = Scheduler(max_batch_size=8, bulk_share=0.25)
    job = object()
    scheduler.add([waiting("a", job=job) for _ in range(3)] + [waiting("b"), waiting("b")])
    assert take_keys(scheduler, []) == ["a", "a", "a", "b", "b"]
