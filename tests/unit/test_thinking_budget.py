"""A thinking budget: the reply that has thought it is made to close its thinking and answer;
and a template told not to think (chat_template_kwargs). The parser alone, then the engine with
the tiny scripted thinker (tests/thinking_model.py)."""

import pytest

from tests.thinking_model import ANSWER, THOUGHT
from tests.unit.test_engine import run_until_done
from tests.unit.test_reasoning import PING, TAGS, chat, reply, thinking_engine  # noqa: F401
from workers.engine.errors import InvalidRequest
from workers.engine.reasoning import ReasoningParser

END = (7, 8)  # an end tag of two tokens


def thought(count):
    return [100 + i for i in range(count)]  # tokens that are no part of the end tag


def test_the_end_tag_is_forced_once_the_budget_is_thought():
    parser = ReasoningParser(TAGS, thinking=True, budget=2, end_ids=END)
    assert parser.forced([]) is None and parser.forced(thought(1)) is None
    assert parser.forced(thought(2)) == 7
    parser.chosen(7)
    assert parser.forced(thought(2) + [7]) == 8 and not parser.answering
    parser.chosen(8)
    assert parser.answering and parser.forced(thought(2) + [7, 8]) is None


def test_an_end_tag_the_reply_began_is_only_finished():
    parser = ReasoningParser(TAGS, thinking=True, budget=2, end_ids=END)
    assert parser.forced([100, 7]) == 8  # it wrote the tag's first token itself
    parser.chosen(8)
    assert parser.answering
    closed = ReasoningParser(TAGS, thinking=True, budget=2, end_ids=END)
    assert closed.forced([7, 8]) is None and closed.answering  # the whole tag: nothing forced


def test_the_budget_counts_from_the_start_tag_the_reply_writes():
    parser = ReasoningParser(TAGS, thinking=False, budget=1, end_ids=END)
    assert parser.forced([]) is None  # not thinking yet
    parser.push("\n<think>", 2)
    assert parser.forced(thought(2)) is None
    assert parser.forced(thought(3)) == 7


def test_a_reply_that_answers_at_once_is_never_forced():
    parser = ReasoningParser(TAGS, thinking=False, budget=0, end_ids=END)
    parser.push("Yes.", 1)
    assert parser.forced(thought(1)) is None and parser.forced(thought(50)) is None


def tokens_of(engine, text):
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_engine_cuts_the_thinking_at_its_budget(thinking_engine):  # noqa: F811
    engine = thinking_engine()
    job = chat("a", params={"temperature": 0, "thinking_token_budget": 3})
    run_until_done(engine, [engine.submit(job)])
    thought, answer, reason, usage = reply(engine, "a")
    assert THOUGHT.startswith(thought) and tokens_of(engine, thought) == 3
    assert (answer, reason) == (ANSWER, "stop")  # the script's answer, after the forced tag
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 4}  # and the end tag


def test_a_budget_of_nothing_answers_at_once(thinking_engine):  # noqa: F811
    engine = thinking_engine()
    run_until_done(engine, [engine.submit(chat("a", params={"thinking_token_budget": 0}))])
    assert reply(engine, "a")[:3] == ("", ANSWER, "stop")


def test_a_forced_tool_call_follows_a_cut_thinking(thinking_engine):  # noqa: F811
    engine = thinking_engine()
    params = {"temperature": 0, "max_tokens": 100, "thinking_token_budget": 2}
    job = chat("a", tools=[PING], tool_choice="required", params=params)
    run_until_done(engine, [engine.submit(job)])
    tokens = [e for e in engine.io.of("a") if e["type"] == "token"]
    thought, answer, reason, _ = reply(engine, "a")
    assert THOUGHT.startswith(thought) and tokens_of(engine, thought) == 2
    assert (answer, reason) == ("", "tool_calls")
    calls = [d for e in tokens for d in e.get("tool_calls", [])]
    assert calls[0]["name"] == "ping" and "".join(d["arguments"] for d in calls) == "{}"


def test_a_template_told_not_to_think_gives_the_answer_alone(thinking_engine):  # noqa: F811
    engine = thinking_engine()
    job = chat("a", chat_template_kwargs={"enable_thinking": False})
    run_until_done(engine, [engine.submit(job)])
    thought, answer, reason, usage = reply(engine, "a")
    assert (thought, answer, reason) == ("", ANSWER, "stop")  # whitespace after the tag dropped
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


@pytest.mark.parametrize(
    "use, value",
    [
        ("{{ 1 + extra }}", "x"),
        ("{{ 1 / extra }}", 0),
        ("{% for i in range(extra) %}{% endfor %}", 10**9),
    ],
)
def test_template_variables_the_template_fails_on_are_the_requests_fault(
    thinking_engine,  # noqa: F811
    use,
    value,
):
    engine = thinking_engine()
    template = engine.tokenizer.chat_template
    engine.tokenizer.chat_template = template + use
    try:
        with pytest.raises(InvalidRequest) as refused:
            engine.submit(chat("a", chat_template_kwargs={"extra": value}))
    finally:
        engine.tokenizer.chat_template = template
    assert refused.value.field == "chat_template_kwargs"
