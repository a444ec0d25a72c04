import pytest

from app.chat_schemas import ChatCompletionSchema
from app.errors import APIError
from app.schemas import CompletionSchema, EmbeddingSchema, load_request

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


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_tools_load_to_the_job_s_shape():
    data = load_chat(tools=[TOOL])
    assert data["tools"] == [{"name": "get_weather", "parameters": {"type": "object"}}]
    assert (data["tool_choice"], data["parallel_tool_calls"]) == ("auto", True)
    named = {"type": "function", "function": {"name": "get_weather"}}
    data = load_chat(tools=[TOOL], tool_choice=named, parallel_tool_calls=False)
    assert (data["tool_choice"], data["parallel_tool_calls"]) == ("get_weather", False)
    assert load_chat()["tool_choice"] == "none" and load_chat()["tools"] == []


def test_legacy_functions_become_tools_with_one_call():
    data = load_chat(functions=[TOOL["function"]], function_call={"name": "get_weather"})
    assert data["legacy_functions"] and data["tools"][0]["name"] == "get_weather"
    assert (data["tool_choice"], data["parallel_tool_calls"]) == ("get_weather", False)


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"function": {"name": "other"}}}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"functions": [TOOL["function"]], "function_call": {"name": "x"}}, "function_call"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ],
)
def test_bad_tools_and_formats_name_the_parameter(changes, param):
    assert bad_param(ChatCompletionSchema(), {**CHAT, **changes}) == param


def test_response_format_gives_the_reply_s_schema():
    assert load_chat()["json_schema"] is None
    assert load_chat(response_format={"type": "text"})["json_schema"] is None
    assert load_chat(response_format={"type": "json_object"})["json_schema"] == {}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert load_chat(response_format=fmt)["json_schema"] == schema


def test_history_with_calls_and_results_is_normalized():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "function", "name": "f", "content": "43"},
    ]
    assert load_chat(messages=messages)["messages"] == [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "name": "f", "arguments": "{}"}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "tool", "content": "43", "tool_call_id": "f", "name": "f"},
    ]
    bad = [{"role": "tool", "content": "42"}]
    assert (
        bad_param(ChatCompletionSchema(), {**CHAT, "messages": bad}) == "messages[0].tool_call_id"
    )


def steered(spec, **changes):
    """The params and options a chat request's reasoning controls give its job."""
    from app.reasoning import ReasoningControls

    params, options = {}, {}
    ReasoningControls.of_chat(load_chat(**changes)).apply(spec, params, options)
    return params, options


def test_reasoning_effort_becomes_a_thinking_budget_for_a_thinking_model():
    from config.registry import ModelSpec

    thinker = ModelSpec("t", "chat", "src", reasoning_format="think-tags")
    assert steered(thinker, reasoning_effort="low") == ({"thinking_token_budget": 1024}, {})
    assert steered(thinker, reasoning_effort="xhigh") == ({}, {})  # no limit
    assert steered(thinker, reasoning_effort="none") == (
        {"thinking_token_budget": 0},
        {"chat_template_kwargs": {"enable_thinking": False}},
    )
    # The model's own budgets, the request's budget and the request's template variables win.
    own = ModelSpec("t", "chat", "src", reasoning_format="think-tags", reasoning_budgets={"low": 5})
    assert steered(own, reasoning_effort="low")[0] == {"thinking_token_budget": 5}
    assert steered(own, reasoning_effort="low", thinking_token_budget=9)[0] == {
        "thinking_token_budget": 9
    }
    assert steered(own, thinking_token_budget=-1) == ({}, {})  # vLLM's "no budget"
    kwargs = {"enable_thinking": True}
    assert steered(thinker, reasoning_effort="none", chat_template_kwargs=kwargs)[1] == {
        "chat_template_kwargs": kwargs
    }
    # A model that does not think: the effort is ignored, template variables still go.
    plain = ModelSpec("p", "chat", "src")
    assert steered(plain, reasoning_effort="none", thinking_token_budget=3) == ({}, {})
    assert steered(plain, chat_template_kwargs={"x": 1}) == ({}, {"chat_template_kwargs": {"x": 1}})


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"thinking_token_budget": -2}, "thinking_token_budget"),
        ({"thinking_token_budget": "10"}, "thinking_token_budget"),
        ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ],
)
def test_bad_reasoning_controls_are_400(changes, param):
    assert bad_param(ChatCompletionSchema(), {**CHAT, **changes}) == param
