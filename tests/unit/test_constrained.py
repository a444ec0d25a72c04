"""Constrained decoding in the batched engine, with the tiny random model (which, free, writes
noise): under a grammar every reply parses and validates, constrained and free rows share the
batch, and tool calls come out as deltas."""

import json

import jsonschema
import pytest
import torch

from tests.unit.test_engine import MemoryIO, run_until_done
from workers.engine import GenerationEngine, InvalidRequest

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
PING = {
    "name": "ping",
    "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
}
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def model_and_tokenizer(long_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(long_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(long_model_dir)


@pytest.fixture
def engine(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=8, name="tiny")


def chat(job_id, **fields):
    params = {"temperature": 1.0, "max_tokens": 300, **fields.pop("params", {})}
    return {"id": job_id, "messages": MESSAGES, "params": params, **fields}


def finish(engine, job_id):
    return [e for e in engine.io.of(job_id) if e["type"] == "token"][-1]["finish_reason"]


def calls(engine, job_id):
    merged = {}
    for event in engine.io.of(job_id):
        for d in event.get("tool_calls", []):
            call = merged.setdefault(d["index"], {"arguments": ""})
            call.update({k: d[k] for k in ("id", "name") if k in d})
            call["arguments"] += d["arguments"]
    return [merged[i] for i in sorted(merged)]


def test_every_sampled_reply_validates_and_stops_by_itself(engine):
    jobs = [chat(f"p{i}", json_schema=PERSON, params={"seed": i}) for i in range(6)]
    run_until_done(engine, [engine.submit(j) for j in jobs])
    for job in jobs:
        jsonschema.validate(json.loads(engine.io.text(job["id"])), PERSON)
        assert finish(engine, job["id"]) == "stop"


def test_json_object_is_an_object_and_max_tokens_cuts_with_length(engine):
    tickets = [
        engine.submit(chat("obj", json_schema={}, params={"temperature": 0, "max_tokens": 400})),
        engine.submit(chat("cut", json_schema=PERSON, params={"max_tokens": 3})),
    ]
    run_until_done(engine, tickets)
    # Greedy, the tiny model closes its object well within the limit: it must parse.
    assert finish(engine, "obj") == "stop"
    assert isinstance(json.loads(engine.io.text("obj")), dict)
    assert finish(engine, "cut") == "length"


def test_constrained_and_free_rows_share_the_batch_and_free_rows_are_unchanged(
    engine, model_and_tokenizer
):
    model, tokenizer = model_and_tokenizer
    solo = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=8)
    free = chat("free", params={"temperature": 0, "max_tokens": 20})
    run_until_done(solo, [solo.submit(free)])
    tickets = [engine.submit(free), engine.submit(chat("json", json_schema=PERSON))]
    engine.step()
    assert engine.load()["running"] == 2  # one forward pass for both
    run_until_done(engine, tickets)
    assert engine.io.text("free") == solo.io.text("free")
    jsonschema.validate(json.loads(engine.io.text("json")), PERSON)


@pytest.mark.parametrize("parallel", [True, False])
def test_required_tool_calls_validate_and_end_the_reply(engine, parallel):
    # Seeded: unseeded, parallel calls may go on until max_tokens cuts the last one.
    job = chat(
        "t",
        tools=[WEATHER, PING],
        tool_choice="required",
        parallel_tool_calls=parallel,
        params={"seed": 1},
    )
    run_until_done(engine, [engine.submit(job)])
    made = calls(engine, "t")
    assert made and engine.io.text("t") == ""  # no markup in the content
    assert parallel or len(made) == 1
    for call in made:
        tool = {"get_weather": WEATHER, "ping": PING}[call["name"]]
        jsonschema.validate(json.loads(call["arguments"]), tool["parameters"])
        assert call["id"].startswith("call_")
    assert finish(engine, "t") == "tool_calls"


def test_a_named_tool_is_the_one_called(engine):
    job = chat("n", tools=[WEATHER, PING], tool_choice="ping", params={"temperature": 0})
    run_until_done(engine, [engine.submit(job)])
    assert [c["name"] for c in calls(engine, "n")] == ["ping"]
    assert json.loads(calls(engine, "n")[0]["arguments"]) == {}


def test_auto_lets_the_model_answer_in_text(engine):
    job = chat(
        "a", tools=[WEATHER], tool_choice="auto", params={"temperature": 0, "max_tokens": 12}
    )
    run_until_done(engine, [engine.submit(job)])
    assert engine.io.text("a") and not calls(engine, "a")  # this model writes no call
    assert finish(engine, "a") == "length"


def test_tools_reach_the_prompt_through_the_builtin_format(engine):
    plain = engine.submit(chat("plain", params={"max_tokens": 1}))
    tooled = engine.submit(chat("tooled", tools=[WEATHER], params={"max_tokens": 1}))
    run_until_done(engine, [plain, tooled])
    usage = [engine.io.of(j)[-1]["usage"]["prompt_tokens"] for j in ("plain", "tooled")]
    assert usage[1] > usage[0] + 100


def test_a_schema_that_cannot_compile_is_refused_before_it_takes_a_slot(engine):
    with pytest.raises(InvalidRequest) as refused:
        engine.submit(chat("bad", json_schema={"type": "nonsense"}))
    assert refused.value.field == "json_schema"
    assert engine.load()["waiting"] == 0


def ended_with(engine, job_id):
    """The job's terminal event: its type and code."""
    last = engine.io.of(job_id)[-1]
    return last["type"], last.get("code")


def test_a_row_sampled_without_its_mask_ends_in_an_engine_error(engine, monkeypatch):
    # The mask is skipped (as if the engine lost it): the first token the random model picks
    # is not one the grammar allows, so the job fails instead of answering in free text.
    monkeypatch.setattr(engine.constraints, "mask", lambda rows, matchers, logits: None)
    forced = chat("f", tools=[WEATHER], tool_choice="get_weather", params={"temperature": 0})
    free = chat("free", params={"temperature": 0, "max_tokens": 5})
    run_until_done(engine, [engine.submit(forced), engine.submit(free)])
    assert ended_with(engine, "f") == ("error", "engine_error")
    assert engine.io.text("f") == "" and not calls(engine, "f")
    assert ended_with(engine, "free")[0] == "done"  # the free row beside it is unharmed


def test_a_forced_reply_without_its_grammar_ends_in_an_engine_error(engine, monkeypatch):
    # The grammar is lost altogether (no matcher): the reply's own contract still holds, so
    # text where only tool calls may be, or a JSON reply that does not parse, is an error.
    monkeypatch.setattr(engine.constraints, "matcher", lambda grammar, param: None)
    tools = chat("t", tools=[WEATHER], tool_choice="required", params={"temperature": 0})
    run_until_done(engine, [engine.submit(tools)])
    assert ended_with(engine, "t") == ("error", "engine_error")
    assert engine.io.text("t") == ""


def test_a_json_reply_that_does_not_parse_breaks_its_contract():
    from types import SimpleNamespace

    from workers.engine.output import TokenOutput
    from workers.engine.sequences import JSON_ONLY

    def seq(reply: str):
        return SimpleNamespace(forced=JSON_ONLY, reply=reply, text=SimpleNamespace(stopped=False))

    def check(reply: str, reason: str | None) -> str:
        return TokenOutput._breaks_contract(seq(reply), "", reason)

    assert not check("Sure! Here", None)  # not ended yet
    assert "does not parse" in check("Sure! Here it is.", "stop")
    assert not check('{"a": 1}', "stop")
    assert not check('{"a": ', "length")  # cut by max_tokens: incomplete, not broken
