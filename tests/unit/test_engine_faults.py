"""Failures inside the engine, caused for real by a model that fails on demand: each ends only the
jobs it touched, with exactly one terminal error event, and the engine goes on."""

import threading
import time

import pytest
import torch

from tests.faulty_model import BOOM
from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.engine import GenerationEngine, InvalidRequest


@pytest.fixture(scope="module")
def faulty(faulty_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        faulty_model_dir, dtype=torch.float32, trust_remote_code=True
    )
    return model.eval(), AutoTokenizer.from_pretrained(faulty_model_dir)


@pytest.fixture
def engine(faulty):
    model, tokenizer = faulty
    return GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=4, name="faulty")


def terminal(engine, job_id):
    events = engine.io.of(job_id)
    ends = [e for e in events if e["type"] in ("done", "error")]
    assert len(ends) == 1 and events[-1] is ends[0]  # exactly one, and last
    return ends[0]


def test_a_prompt_that_fails_its_prefill_fails_alone(engine):
    solo = GenerationEngine(engine.model, engine.tokenizer, MemoryIO(), max_batch_size=4)
    run_until_done(solo, [solo.submit(job("a", "Hello", max_tokens=6))])
    tickets = [
        engine.submit(job("a", "Hello", max_tokens=6)),
        engine.submit(job("bad", f"Hello {BOOM}", max_tokens=6)),
        engine.submit(job("b", "Once upon a time", max_tokens=6)),
    ]
    engine.step()  # one prefill for all three: it fails, then each runs alone
    run_until_done(engine, tickets)
    assert terminal(engine, "bad")["code"] == "engine_error"
    assert tickets[1].outcome == "error"
    assert terminal(engine, "a")["type"] == terminal(engine, "b")["type"] == "done"
    assert engine.io.text("a") == solo.io.text("a")  # unharmed by its failed neighbour


def test_a_failed_decode_ends_the_running_rows_and_the_engine_goes_on(engine):
    boom = engine.tokenizer.convert_tokens_to_ids(BOOM)
    tickets = [
        engine.submit(job("forced", "Hello", max_tokens=6, logit_bias={boom: 100})),
        engine.submit(job("neighbour", "Hello there", max_tokens=6)),
    ]
    run_until_done(engine, tickets)
    for job_id in ("forced", "neighbour"):  # the half-updated cache cannot be trusted
        assert terminal(engine, job_id)["code"] == "engine_error"
    run_until_done(engine, [engine.submit(job("after", "Hello", max_tokens=4))])
    assert terminal(engine, "after")["usage"]["completion_tokens"] == 4
    assert (engine.load()["running"], engine.load()["waiting"]) == (0, 0)


def test_an_embedding_input_that_fails_fails_alone(engine):
    tickets = [
        engine.submit({"id": "good", "kind": "embedding", "inputs": ["Hello", "world"]}),
        engine.submit({"id": "bad", "kind": "embedding", "inputs": [f"x {BOOM}"]}),
    ]
    engine.step()
    assert [t.outcome for t in tickets] == ["done", "error"]
    assert len(terminal(engine, "good")["data"]) == 2
    assert terminal(engine, "bad")["code"] == "engine_error"


@pytest.mark.parametrize(
    ("bad_job", "field", "code"),
    [
        ({"prompts": ["a\ud800b"]}, "prompts[0]", "invalid_request"),
        (
            {"messages": [{"role": "user", "content": "\udfff"}]},
            "messages[0].content",
            "invalid_request",
        ),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages", "invalid_request"),
        ({"prompts": ["Hi"], "params": {"logit_bias": {"99999": 5}}}, "params.logit_bias", None),
        ({"prompts": ["Hi", [1, 2, 10**6]]}, "prompts[1]", "invalid_request"),
        (
            {"prompts": ["Hello world"] * 3, "max_request_tokens": 5},
            "prompts",
            "max_tokens_per_request",
        ),
        ({"kind": "embedding", "inputs": ["ok", "\ud800"]}, "inputs[1]", "invalid_request"),
    ],
)
def test_content_the_model_cannot_take_is_refused_before_it_takes_a_slot(
    engine, bad_job, field, code
):
    """The engine names the job's field at fault (the front names the request's parameter)."""
    with pytest.raises(InvalidRequest) as refused:
        engine.submit({"id": "x", "params": {"max_tokens": 2}, **bad_job})
    assert refused.value.field == field
    assert not {"logit_bias", "MAX_REQUEST_TOKENS"} & set(refused.value.message.split())
    assert code is None or refused.value.code == code
    assert (engine.load()["running"], engine.load()["waiting"]) == (0, 0)


def test_the_template_s_own_words_reach_the_client(engine):
    with pytest.raises(InvalidRequest, match="must start with a user or system message"):
        engine.submit({"id": "x", "messages": [{"role": "assistant", "content": "Hi"}]})


def test_a_step_that_never_ends_is_seen_as_stalled(engine, tmp_path, monkeypatch):
    block = tmp_path / "block"
    block.touch()
    monkeypatch.setenv("FAULTY_BLOCK_FILE", str(block))
    engine.start()
    try:
        ticket = engine.submit(job("stuck", "Hello", max_tokens=3))
        deadline = time.monotonic() + 10
        while engine.step_seconds() < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.stalled(0.3) and not engine.stalled(60)
        assert engine.load()["step_seconds"] >= 0.3  # what the heartbeat reports
        block.unlink()  # released: the step ends and the job with it
        assert ticket.wait(10) and ticket.outcome == "done"
        assert not engine.stalled(0.3)
    finally:
        block.unlink(missing_ok=True)
        engine.stop()


def test_an_engine_whose_thread_died_with_work_is_stalled(engine):
    engine._thread = threading.Thread(target=lambda: None)
    engine._thread.start()
    engine._thread.join()
    assert not engine.stalled(60)  # no work: nothing is stuck
    engine.submit(job("orphan", "Hello", max_tokens=3))
    assert engine.stalled(60)
