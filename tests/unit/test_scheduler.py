"""Priorities in the engine: interactive sequences first, bulk ones in the capacity left, bulk rows
above their share preempted for waiting interactive ones and resumed exactly."""

import pytest

from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.engine import GenerationEngine


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
