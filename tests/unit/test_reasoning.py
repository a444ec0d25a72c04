"""A thinking model's reply split into thinking and answer: the parser alone, then the engine
with the tiny scripted model (tests/thinking_model.py) and an in-memory JobIO."""

import json

import pytest
import torch

from tests.thinking_model import ANSWER, THOUGHT
from tests.unit.test_engine import MemoryIO, run_until_done
from workers.engine import GenerationEngine
from workers.engine.reasoning import REASONING_TAGS, ReasoningParser

TAGS = REASONING_TAGS["think-tags"]
PING = {"name": "ping", "parameters": {"type": "object", "additionalProperties": False}}


def split(parser, pieces):
    """Push ``pieces`` one by one, then flush: the thinking and the answer, whole."""
    thought = answer = ""
    for number, piece in enumerate(pieces):
        r, c = parser.push(piece, number + 1)
        thought, answer = thought + r, answer + c
    r, c = parser.flush()
    return thought + r, answer + c


@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_thinking_the_prompt_opened_is_split_from_the_answer(size):
    text = "Let me see: 2 < 3.</think>\n\nIt is 3."
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert split(ReasoningParser(TAGS, thinking=True), pieces) == ("Let me see: 2 < 3.", "It is 3.")


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_reply_that_opens_its_own_thinking(size):
    text = "\n<think>hmm</think>Yes."
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert split(ReasoningParser(TAGS, thinking=False), pieces) == ("hmm", "Yes.")


def test_a_reply_that_does_not_think_is_all_answer():
    parser = ReasoningParser(TAGS, thinking=False)
    assert parser.push("  <th", 1) == ("", "")  # may be the tag: held back
    assert parser.push("is is <think> text", 2) == ("", "  <this is <think> text")
    assert parser.answering


def test_a_reply_cut_while_thinking_is_all_thinking():
    parser = ReasoningParser(TAGS, thinking=True)
    assert parser.push("still </thi", 1) == ("still ", "")
    assert parser.flush() == ("</thi", "")
    assert not parser.answering


@pytest.fixture(scope="module")
def thinking_engine(thinking_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        thinking_model_dir, dtype=torch.float32, trust_remote_code=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(thinking_model_dir)

    def make():
        return GenerationEngine(
            model, tokenizer, MemoryIO(), max_batch_size=4, reasoning_format="think-tags"
        )

    return make


def chat(job_id, **extra):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    return {"id": job_id, "messages": messages, "params": {"temperature": 0}, **extra}


def reply(engine, job_id):
    tokens = [e for e in engine.io.of(job_id) if e["type"] == "token"]
    done = [e for e in engine.io.of(job_id) if e["type"] == "done"]
    return (
        "".join(e.get("reasoning", "") for e in tokens),
        "".join(e["text"] for e in tokens),
        tokens[-1]["finish_reason"],
        done[0]["usage"] if done else None,
    )


def test_the_engine_sends_thinking_apart_from_the_answer(thinking_engine):
    engine = thinking_engine()
    run_until_done(engine, [engine.submit(chat("a"))])
    thought, answer, reason, usage = reply(engine, "a")
    assert (thought, answer, reason) == (THOUGHT, ANSWER, "stop")
    thinking = len(engine.tokenizer(THOUGHT)["input_ids"]) + 1  # and the closing tag
    assert usage["completion_tokens_details"] == {"reasoning_tokens": thinking}
    assert usage["completion_tokens"] > thinking


def test_max_tokens_counts_the_thinking(thinking_engine):
    engine = thinking_engine()
    run_until_done(engine, [engine.submit(chat("a", params={"temperature": 0, "max_tokens": 3}))])
    thought, answer, reason, usage = reply(engine, "a")
    assert (answer, reason) == ("", "length")
    assert THOUGHT.startswith(thought) and thought
    assert usage["completion_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] == 3


def test_a_completion_prompt_is_not_parsed(thinking_engine):
    engine = thinking_engine()
    prompt = engine.tokenizer("hi<think>")["input_ids"]
    run_until_done(engine, [engine.submit({"id": "a", "prompts": [prompt], "params": {}})])
    assert "</think>" in engine.io.text("a")


def test_a_grammar_applies_after_the_thinking(thinking_engine):
    engine = thinking_engine()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    job = chat("a", json_schema=schema, params={"temperature": 0, "max_tokens": 60})
    run_until_done(engine, [engine.submit(job)])
    thought, answer, reason, _ = reply(engine, "a")
    assert thought == THOUGHT  # the script's thinking, unmasked
    assert reason in ("stop", "length")
    if reason == "stop":
        assert isinstance(json.loads(answer)["n"], int)


def test_a_forced_tool_call_comes_after_the_thinking(thinking_engine):
    engine = thinking_engine()
    job = chat(
        "a",
        tools=[PING],
        tool_choice="required",
        parallel_tool_calls=False,
        params={"temperature": 0, "max_tokens": 100},
    )
    run_until_done(engine, [engine.submit(job)])
    tokens = [e for e in engine.io.of("a") if e["type"] == "token"]
    thought, answer, reason, _ = reply(engine, "a")
    calls = [d for e in tokens for d in e.get("tool_calls", [])]
    assert thought == THOUGHT and answer == ""  # the script's answer never got past the grammar
    assert reason == "tool_calls" and calls[0]["name"] == "ping"
    assert "".join(d["arguments"] for d in calls) == "{}"


def test_with_tools_on_auto_the_reply_may_answer_in_text(thinking_engine):
    engine = thinking_engine()
    job = chat("a", tools=[PING], params={"temperature": 0, "max_tokens": 100})
    run_until_done(engine, [engine.submit(job)])
    assert reply(engine, "a")[:3] == (THOUGHT, ANSWER, "stop")


def test_under_a_grammar_the_first_token_may_open_the_thinking(thinking_engine):
    """A template that does not open the tag (Qwen3's): the reply may still think first,
    though its grammar allows no ``<think>``."""
    engine = thinking_engine()
    think = engine.tokenizer.convert_tokens_to_ids("<think>")
    schema = {"type": "object"}
    prompt = {"role": "user", "content": "hi"}
    job = {
        "id": "a",
        "messages": [prompt],
        "add_generation_prompt": False,  # the prompt ends before the tag
        "json_schema": schema,
        "params": {"temperature": 0, "max_tokens": 4, "logit_bias": {str(think): 100}},
    }
    run_until_done(engine, [engine.submit(job)])
    thought, answer, reason, _ = reply(engine, "a")
    assert (answer, reason) == ("", "length")  # no error: <think> was allowed first
    assert thought.startswith("<think>")  # the bias keeps writing it, inside the thinking


def test_a_stop_string_in_the_thinking_ends_a_forced_call_cleanly(thinking_engine):
    """The client's stop string cut the reply before any call: it stops, as asked, and is no
    broken contract (not an engine error)."""
    engine = thinking_engine()
    params = {"temperature": 0, "max_tokens": 100, "stop": ["quick"]}
    job = chat("a", tools=[PING], tool_choice="required", params=params)
    run_until_done(engine, [engine.submit(job)])
    assert [e["type"] for e in engine.io.of("a")][-1] == "done"
    thought, answer, reason, _ = reply(engine, "a")
    assert (thought, answer, reason) == ("The ", "", "stop")


def test_tags_that_decoding_drops_turn_reasoning_off(thinking_model_dir):
    from transformers import AutoTokenizer

    from workers.engine.reasoning import reasoning_tags

    tokenizer = AutoTokenizer.from_pretrained(thinking_model_dir)
    assert reasoning_tags("think-tags", tokenizer, "m") == TAGS
    tokenizer.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    assert reasoning_tags("think-tags", tokenizer, "m") is None
