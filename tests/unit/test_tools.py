"""Tool calls in the prompt and in the reply: the built-in tools prompt, and the parser that
streams calls as OpenAI's deltas, however the text is split."""

import json

import pytest

from config.grammars import TOOL_FORMATS
from workers.engine.tools import ToolCallParser, builtin_messages

HERMES = TOOL_FORMATS["hermes"]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PING = '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>'


def parse(text: str, size: int):
    parser, content, deltas = ToolCallParser(HERMES), "", []
    for start in range(0, len(text), size):
        more, calls = parser.push(text[start : start + size])
        content, deltas = content + more, deltas + calls
    more, calls = parser.flush()
    return content + more, deltas + calls, parser.calls


def merged(deltas):
    calls = {}
    for d in deltas:
        call = calls.setdefault(d["index"], {"name": None, "arguments": ""})
        if "name" in d:
            assert call["name"] is None and d["id"].startswith("call_")
            call["name"] = d["name"]
        call["arguments"] += d["arguments"]
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_calls_are_parsed_however_the_text_streams(size):
    content, deltas, count = parse("Let me check. " + CALL + "\n" + PING, size)
    assert content == "Let me check. "  # no markup leaks into the content
    assert count == 2
    calls = merged(deltas)
    assert [c["name"] for c in calls] == ["get_weather", "ping"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Paris"}, {}]
    first = [d for d in deltas if "name" in d]
    assert all(d["arguments"] == "" for d in first)  # the first delta names the call


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_text_that_only_looks_like_a_tag_is_content(size):
    text = "a <tool and <b> then <tool_cal"
    content, deltas, count = parse(text, size)
    assert (content, deltas, count) == (text, [], 0)


def test_a_call_cut_short_streams_what_it_has():
    cut = CALL.index("Paris") + 2
    content, deltas, count = parse(CALL[:cut], 5)
    assert count == 0 and merged(deltas)[0]["arguments"] == '{"city": "Pa'


def test_the_builtin_prompt_describes_tools_and_writes_history_in_markup():
    tools = [{"name": "get_weather", "parameters": {"type": "object"}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'}],
        },
        {"role": "tool", "content": "18 C", "tool_call_id": "c1"},
    ]
    out = builtin_messages(messages, tools, HERMES)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "get_weather"' in out[0]["content"] and "<tools>" in out[0]["content"]
    assert out[2] == {"role": "assistant", "content": CALL.replace("Paris", "Paris")}
    assert out[3] == {"role": "user", "content": "<tool_response>\n18 C\n</tool_response>"}


TOOLS_TEMPLATE = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}"
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }}({{ c.function.arguments.city }})"
    "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_a_template_that_renders_tools_gets_them_and_the_calls_as_objects(tiny_model_dir):
    from transformers import AutoTokenizer

    from workers.engine.intake import chat_prompt
    from workers.engine.tools import template_renders_tools

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert not template_renders_tools(tokenizer)  # the tiny model's own: the built-in prompt
    tokenizer.chat_template = TOOLS_TEMPLATE
    assert template_renders_tools(tokenizer)
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'}],
        },
    ]
    tools = [{"name": "get_weather", "parameters": {"type": "object"}}]
    ids = chat_prompt(tokenizer, messages, "m", tools, tool_format=None)
    text = tokenizer.decode(ids)
    assert text.startswith("TOOLS:get_weather;") and "CALL get_weather(Paris)" in text
