"""Reasoning output, for real: a worker serving a tiny model that thinks by a script (its
template opens ``<think>``), asked with the openai SDK through chat completions and the Responses
API, streamed and not, with tools after the thinking."""

import httpx
import openai
import pytest

from tests.integration.conftest import THINK
from tests.thinking_model import ANSWER, THOUGHT

pytestmark = pytest.mark.usefixtures("think_worker")

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
PING = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Check that the service is up.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}


def test_chat_returns_the_thinking_apart_from_the_answer(openai_client):
    reply = openai_client.chat.completions.create(model=THINK, messages=MESSAGES, temperature=0)
    message = reply.choices[0].message
    assert message.content == ANSWER  # no tags, no thinking
    assert message.reasoning_content == THOUGHT and message.reasoning == THOUGHT
    assert reply.choices[0].finish_reason == "stop"
    thinking = reply.usage.completion_tokens_details.reasoning_tokens
    assert 0 < thinking < reply.usage.completion_tokens


def test_chat_streams_the_thinking_as_reasoning_content(openai_client):
    stream = openai_client.chat.completions.create(
        model=THINK,
        messages=MESSAGES,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    thought = answer = ""
    order = []
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if getattr(delta, "reasoning_content", None):
                thought += delta.reasoning_content
                order.append("thinking")
            if delta.content:
                answer += delta.content
                order.append("answer")
    assert (thought, answer) == (THOUGHT, ANSWER)
    assert order.index("answer") > len(order) - order[::-1].index("thinking") - 1  # all before
    assert usage.completion_tokens_details.reasoning_tokens > 0


def test_max_tokens_cuts_the_thinking(openai_client):
    reply = openai_client.chat.completions.create(
        model=THINK, messages=MESSAGES, temperature=0, max_tokens=4
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.message.content == ""
    assert THOUGHT.startswith(choice.message.reasoning_content)
    assert reply.usage.completion_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_call_comes_after_the_thinking(openai_client, stream):
    request = dict(
        model=THINK,
        messages=MESSAGES,
        tools=[PING],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=100,
    )
    if not stream:
        reply = openai_client.chat.completions.create(**request)
        choice = reply.choices[0]
        message = choice.message
        assert message.reasoning_content == THOUGHT and message.content is None
        assert choice.finish_reason == "tool_calls"
        assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
            ("ping", "{}")
        ]
        return
    thought, content, arguments, reason = "", "", "", None
    for chunk in openai_client.chat.completions.create(**request, stream=True):
        delta = chunk.choices[0].delta
        thought += getattr(delta, "reasoning_content", None) or ""
        content += delta.content or ""
        arguments += "".join(c.function.arguments or "" for c in delta.tool_calls or [])
        reason = chunk.choices[0].finish_reason or reason
    assert (thought, content, arguments, reason) == (THOUGHT, "", "{}", "tool_calls")


def test_responses_return_a_reasoning_item(openai_client):
    response = openai_client.responses.create(model=THINK, input=MESSAGES[0]["content"])
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    assert response.output[0].content[0].text == THOUGHT
    assert response.output_text == ANSWER
    assert response.usage.output_tokens_details.reasoning_tokens > 0

    # The next turn, with the reasoning item sent back (as the Agents SDK does).
    follow = openai_client.responses.create(
        model=THINK,
        input=[
            {"role": "user", "content": MESSAGES[0]["content"]},
            *[item.model_dump(exclude_none=True) for item in response.output],
            {"role": "user", "content": "And of Italy?"},
        ],
    )
    assert follow.status == "completed" and follow.output_text == ANSWER


def test_responses_stream_reasoning_text_events(openai_client):
    events = list(
        openai_client.responses.create(model=THINK, input=MESSAGES[0]["content"], stream=True)
    )
    types = [e.type for e in events]
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert deltas == THOUGHT
    done = next(e for e in events if e.type == "response.reasoning_text.done")
    assert done.text == THOUGHT and done.output_index == 0
    # The thinking's item is complete before the answer's text starts.
    assert types.index("response.output_item.done") < types.index("response.output_text.delta")
    final = events[-1].response
    assert final.output[0].type == "reasoning" and final.output_text == ANSWER


def test_models_list_the_reasoning_capability(front):
    models = httpx.get(f"{front}/v1/models", timeout=30).json()["data"]
    (entry,) = [m for m in models if m["id"] == THINK]
    assert "reasoning" in entry["capabilities"]


def thought_tokens(front, text):
    """How many tokens ``text`` is, by the thinking model's tokenizer (/tokenize)."""
    body = {"model": THINK, "prompt": text, "add_special_tokens": False}
    return httpx.post(f"{front}/tokenize", json=body, timeout=30).json()["count"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_thinking_budget_cuts_the_thinking_and_the_model_answers(openai_client, front, stream):
    request = dict(model=THINK, messages=MESSAGES, temperature=0)
    extra = {"thinking_token_budget": 3}
    if not stream:
        reply = openai_client.chat.completions.create(**request, extra_body=extra)
        message = reply.choices[0].message
        thought, answer = message.reasoning_content, message.content
        assert reply.usage.completion_tokens_details.reasoning_tokens == 4  # and the end tag
    else:
        thought = answer = ""
        for chunk in openai_client.chat.completions.create(
            **request, extra_body=extra, stream=True
        ):
            delta = chunk.choices[0].delta
            thought += getattr(delta, "reasoning_content", None) or ""
            answer += delta.content or ""
    assert THOUGHT.startswith(thought) and thought_tokens(front, thought) == 3
    assert answer == ANSWER


def test_reasoning_effort_sets_the_models_budget(openai_client, front):
    reply = openai_client.chat.completions.create(
        model=THINK, messages=MESSAGES, temperature=0, reasoning_effort="low"
    )
    message = reply.choices[0].message
    assert THOUGHT.startswith(message.reasoning_content)  # the registry's low: 2 tokens
    assert thought_tokens(front, message.reasoning_content) == 2
    assert message.content == ANSWER


@pytest.mark.parametrize(
    "controls",
    [{"reasoning_effort": "none"}, {"chat_template_kwargs": {"enable_thinking": False}}],
)
def test_told_not_to_think_the_model_answers_at_once(openai_client, controls):
    reply = openai_client.chat.completions.create(
        model=THINK, messages=MESSAGES, temperature=0, extra_body=controls
    )
    message = reply.choices[0].message
    assert message.content == ANSWER and not getattr(message, "reasoning_content", None)
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0


def test_a_forced_tool_call_follows_a_thinking_cut_by_its_budget(openai_client):
    reply = openai_client.chat.completions.create(
        model=THINK,
        messages=MESSAGES,
        tools=[PING],
        tool_choice="required",
        temperature=0,
        max_tokens=100,
        extra_body={"thinking_token_budget": 2},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert THOUGHT.startswith(choice.message.reasoning_content)
    assert choice.message.reasoning_content != THOUGHT
    assert [c.function.name for c in choice.message.tool_calls] == ["ping"]


def test_responses_take_the_reasoning_effort(openai_client, front):
    response = openai_client.responses.create(
        model=THINK, input=MESSAGES[0]["content"], reasoning={"effort": "low", "summary": "auto"}
    )
    assert (response.reasoning.effort, response.reasoning.summary) == ("low", "auto")
    (thinking,) = [item for item in response.output if item.type == "reasoning"]
    assert thought_tokens(front, thinking.content[0].text) == 2
    assert response.output_text == ANSWER
    quiet = openai_client.responses.create(
        model=THINK, input=MESSAGES[0]["content"], reasoning={"effort": "none"}
    )
    assert [item.type for item in quiet.output] == ["message"]
    assert quiet.output_text == ANSWER


def test_the_template_variables_reach_tokenize(front):
    body = {"model": THINK, "messages": MESSAGES}
    opened = httpx.post(f"{front}/tokenize", json=body, timeout=30).json()
    body["chat_template_kwargs"] = {"enable_thinking": False}
    closed = httpx.post(f"{front}/tokenize", json=body, timeout=30).json()
    assert closed["count"] == opened["count"] + 1  # <think></think>: one token more


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"thinking_token_budget": -2}, "thinking_token_budget"),
        ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
    ],
)
def test_bad_reasoning_controls_are_400(openai_client, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(model=THINK, messages=MESSAGES, extra_body=extra)
    assert refused.value.body["param"] == param
