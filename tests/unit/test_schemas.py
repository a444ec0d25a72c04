import pytest

from app.errors import APIError
from app.schemas import ChatCompletionSchema, CompletionSchema, EmbeddingSchema, load_request

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def load_chat(**changes):
    return load_request(ChatCompletionSchema(), {**CHAT, **changes})


def bad_param(schema, body):
    with pytest.raises(APIError) as info:
        load_request(schema, body)
    assert info.value.status == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"
    return info.value.body["error"]["param"]


def test_defaults_follow_openai():
    data = load_chat()
    params = ChatCompletionSchema().sampling(data)
    assert params == {
        "max_tokens": None,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": -1,
        "stop": [],
        "seed": None,
        "ignore_eos": False,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "logit_bias": {},
        "n": 1,
        "logprobs": None,
        "echo": False,
    }
    assert data["stream"] is False


def test_unknown_fields_are_ignored():
    data = load_chat(logit_bias_extension=1, frequency_penalty_v9="x")
    assert "logit_bias_extension" not in data


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 7}, "stop"),
        ({"stream": "maybe"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": 5}, "model"),
    ],
)
def test_bad_values_name_the_parameter(changes, param):
    assert bad_param(ChatCompletionSchema(), {**CHAT, **changes}) == param


def test_missing_model_is_named():
    assert bad_param(ChatCompletionSchema(), {"messages": CHAT["messages"]}) == "model"


def test_body_must_be_an_object():
    with pytest.raises(APIError) as info:
        load_request(ChatCompletionSchema(), ["not", "an", "object"])
    assert info.value.status == 400


def test_content_parts_are_joined_and_developer_is_system():
    data = load_chat(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": t} for t in "ab"]},
        ]
    )
    assert data["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ab"},
    ]


def test_image_parts_are_rejected():
    part = {"type": "image_url", "image_url": {"url": "x"}}
    body = {**CHAT, "messages": [{"role": "user", "content": [part]}]}
    assert bad_param(ChatCompletionSchema(), body) == "messages[0].content"


def test_max_completion_tokens_wins_over_max_tokens():
    assert load_chat(max_tokens=5, max_completion_tokens=9)["max_tokens"] == 9


def test_stop_string_becomes_a_list_and_top_p_zero_is_greedy():
    data = load_chat(stop="\n", top_p=0)
    params = ChatCompletionSchema().sampling(data)
    assert params["stop"] == ["\n"] and params["temperature"] == 0.0


def test_completion_prompt_string_or_list():
    schema = CompletionSchema()
    assert load_request(schema, {"model": "m", "prompt": "x"})["prompt"] == ["x"]
    assert load_request(schema, {"model": "m", "prompt": ["x", "y"]})["prompt"] == ["x", "y"]
    assert bad_param(schema, {"model": "m", "prompt": []}) == "prompt"
    assert bad_param(schema, {"model": "m", "prompt": [1, "x"]}) == "prompt"


def test_embedding_input_and_options():
    schema = EmbeddingSchema()
    data = load_request(schema, {"model": "m", "input": "hello"})
    assert data["input"] == ["hello"] and data["encoding_format"] == "float"
    assert bad_param(schema, {"model": "m", "input": ""}) == "input"
    assert bad_param(schema, {"model": "m", "input": []}) == "input"
    assert bad_param(schema, {"model": "m", "input": "x", "encoding_format": "hex"}) == (
        "encoding_format"
    )
    assert bad_param(schema, {"model": "m", "input": "x", "dimensions": 8}) == "dimensions"


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_tools_and_structured_output_are_refused_not_ignored(changes, param):
    assert bad_param(ChatCompletionSchema(), {**CHAT, **changes}) == param


def test_their_no_op_forms_are_accepted():
    data = load_chat(tools=[], tool_choice="none", response_format={"type": "text"})
    assert data["messages"]
