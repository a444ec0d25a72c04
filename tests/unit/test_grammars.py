"""The grammars of structured outputs and tool calls, run through llguidance with the tiny
model's tokenizer: what they accept, what they refuse, and schemas that cannot compile."""

import llguidance
import llguidance.hf
import pytest

from config.grammars import TOOL_FORMATS, GrammarError, request_grammar

HERMES = TOOL_FORMATS["hermes"]
WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
NOARGS = {"name": "ping", "parameters": {}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PING = '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>'


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model_dir)
    return hf, llguidance.hf.from_tokenizer(hf)


def accepts(tokenizer, grammar: str, text: str) -> bool:
    hf, lltok = tokenizer
    matcher = llguidance.LLMatcher(lltok, grammar)
    ids = hf(text, add_special_tokens=False)["input_ids"] + [hf.eos_token_id]
    return matcher.consume_tokens(ids) and not matcher.is_error()


@pytest.mark.parametrize(
    ("choice", "parallel", "text", "ok"),
    [
        ("auto", True, "Just text, no call.", True),
        ("auto", True, "Let me look. " + CALL, True),
        ("auto", True, CALL + "\n" + PING, True),
        ("auto", False, CALL + "\n" + PING, False),  # one call at most
        ("auto", True, CALL + " and more text", False),  # nothing after the calls
        ("required", True, CALL, True),
        ("required", True, "No call.", False),
        ("required", True, CALL.replace('"Paris"', "7"), False),  # arguments must validate
        ("required", True, CALL.replace("get_weather", "get_wether"), False),  # no such tool
        ("ping", True, PING, True),
        ("ping", True, CALL, False),  # only the named tool
    ],
)
def test_tool_grammars(tokenizer, choice, parallel, text, ok):
    grammar = request_grammar(None, [WEATHER, NOARGS], choice, parallel, HERMES)
    assert accepts(tokenizer, grammar, text) is ok


def test_json_grammars(tokenizer):
    any_object = request_grammar({}, None, "none", True, HERMES)
    assert accepts(tokenizer, any_object, '{"a": [1, 2], "b": null}')
    assert not accepts(tokenizer, any_object, "[1, 2]")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    strict = request_grammar(schema, None, "none", True, HERMES)
    assert accepts(tokenizer, strict, '{"n": 3}')
    assert not accepts(tokenizer, strict, '{"n": "3"}')
    assert not accepts(tokenizer, strict, '{"n":   3}')  # no runs of whitespace


def test_no_grammar_without_a_constraint():
    assert request_grammar(None, None, "none", True, HERMES) is None
    assert request_grammar(None, [WEATHER], "none", True, HERMES) is None


@pytest.mark.parametrize(
    ("schema", "tools", "param"),
    [
        ({"type": "bogus"}, None, "json_schema"),
        ({"$ref": "#/definitions/missing"}, None, "json_schema"),
        (None, [{"name": "f", "parameters": {"type": "nothing"}}], "tools"),
    ],
)
def test_schemas_that_cannot_compile_name_their_parameter(schema, tools, param):
    with pytest.raises(GrammarError) as error:
        request_grammar(schema, tools, "auto", True, HERMES)
    assert error.value.param == param


def test_auto_with_a_response_format_answers_in_its_schema_or_calls(tokenizer):
    answer = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    grammar = request_grammar(answer, [WEATHER], "auto", True, HERMES)
    assert accepts(tokenizer, grammar, '{"n": 3}')
    assert accepts(tokenizer, grammar, CALL)
    assert not accepts(tokenizer, grammar, "Free text.")
