"""Tools and structured outputs through the real clients: the openai SDK (parse, streamed tool
calls, sync and async), LangChain and the OpenAI Agents SDK, against the tiny random model, which
writes noise when free: every structured reply that comes back valid is the grammar's doing."""

import asyncio
import json
from typing import Annotated, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.integration.conftest import TOOLS

pytestmark = pytest.mark.usefixtures("tools_worker")

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": WEATHER_PARAMS,
        "strict": True,
    },
}
PING = {
    "type": "function",
    "function": {
        "name": "ping",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
PARAMS = {"get_weather": WEATHER_PARAMS, "ping": PING["function"]["parameters"]}


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)
    languages: list[Annotated[str, Field(max_length=8)]] = Field(max_length=2)


def validate_call(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), PARAMS[name])


def test_parse_with_a_pydantic_model(openai_client):
    for seed in range(3):
        completion = openai_client.chat.completions.parse(
            model=TOOLS, messages=MESSAGES, response_format=Person, seed=seed, max_tokens=300
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Person)


def test_json_object_mode_gives_an_object(openai_client):
    reply = openai_client.chat.completions.create(
        model=TOOLS,
        messages=MESSAGES,
        response_format={"type": "json_object"},
        max_tokens=400,
        temperature=0,
    )
    # Greedy, the tiny model closes its object well within the limit: it must parse.
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_required_tool_calls_not_streamed(openai_client):
    reply = openai_client.chat.completions.create(
        model=TOOLS, messages=MESSAGES, tools=[WEATHER, PING], tool_choice="required", seed=1
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        validate_call(call.function.name, call.function.arguments)


def collect_stream(chunks) -> tuple[str, dict, str | None]:
    content, calls, finish = "", {}, None
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            if call.index not in calls:  # the first delta of a call names it
                assert call.id and call.type == "function" and call.function.name
                calls[call.index] = {"name": call.function.name, "arguments": ""}
            else:
                assert call.id is None and call.function.name is None
            calls[call.index]["arguments"] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content, calls, finish


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "ping"}}])
def test_streamed_tool_calls_arrive_whole(openai_client, choice):
    stream = openai_client.chat.completions.create(
        model=TOOLS,
        messages=MESSAGES,
        tools=[WEATHER, PING],
        tool_choice=choice,
        stream=True,
        seed=1,  # unseeded, parallel calls may run until the context cuts the last one
    )
    content, calls, finish = collect_stream(stream)
    assert content == "" and finish == "tool_calls" and calls
    for call in calls.values():
        validate_call(call["name"], call["arguments"])
    if isinstance(choice, dict):
        assert [c["name"] for c in calls.values()] == ["ping"]
        assert json.loads(calls[0]["arguments"]) == {}  # never "" for a call without arguments


def test_async_client_streams_tool_calls(openai_client):
    from openai import AsyncOpenAI

    async def stream():
        client = AsyncOpenAI(base_url=str(openai_client.base_url), api_key="EMPTY", max_retries=0)
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model=TOOLS,
                messages=MESSAGES,
                tools=[WEATHER],
                tool_choice="required",
                parallel_tool_calls=False,
                stream=True,
            )
        ]
        await client.close()
        return chunks

    content, calls, finish = collect_stream(asyncio.run(stream()))
    assert finish == "tool_calls" and len(calls) == 1
    validate_call(calls[0]["name"], calls[0]["arguments"])


def test_a_conversation_with_calls_and_results_goes_on(openai_client):
    first = openai_client.chat.completions.create(
        model=TOOLS, messages=MESSAGES, tools=[WEATHER], tool_choice="required", seed=1
    )
    call = first.choices[0].message.tool_calls[0]
    history = MESSAGES + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18}'},
    ]
    # ignore_eos: the random model may otherwise end at once, and an empty reply proves nothing.
    reply = openai_client.chat.completions.create(
        model=TOOLS,
        messages=history,
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=5,
        extra_body={"ignore_eos": True},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and not choice.message.tool_calls
    assert choice.message.content


def test_the_legacy_functions_parameters(openai_client):
    reply = openai_client.chat.completions.create(
        model=TOOLS,
        messages=MESSAGES,
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call" and not choice.message.tool_calls
    validate_call(choice.message.function_call.name, choice.message.function_call.arguments)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nope"}},
                }
            },
            "response_format",
        ),
        ({"tools": [{**PING, "function": {"name": "f", "parameters": {"type": "nope"}}}]}, "tools"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            },
            "tool_choice",
        ),
    ],
)
def test_schemas_that_cannot_be_enforced_are_400(openai_client, extra, param):
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.chat.completions.create(model=TOOLS, messages=MESSAGES, **extra)
    assert error.value.body["param"] == param


# -- LangChain ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(front):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=TOOLS, base_url=f"{front}/v1", api_key="EMPTY", max_retries=0, max_tokens=300
    )


def test_langchain_bind_tools_with_a_tool_choice(chat_model):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: Literal["Paris", "London", "Tokyo"]) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    # strict: the arguments' schema closed (additionalProperties false), or the random model may
    # add properties until max_tokens cuts the call.
    bound = chat_model.bind_tools([get_weather], tool_choice="get_weather", strict=True)
    message = bound.invoke("Weather?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and call["args"]["city"] in ("Paris", "London", "Tokyo")
    assert get_weather.invoke(call["args"]).startswith("sunny in")


def test_langchain_structured_output_strict_json_schema(chat_model):
    structured = chat_model.with_structured_output(Person, method="json_schema", strict=True)
    person = structured.invoke("Describe a person.")
    assert isinstance(person, Person)


# -- The OpenAI Agents SDK -------------------------------------------------------------------------


def test_an_agent_calls_a_function_tool(front):
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no export to OpenAI's servers
    seen = []

    @function_tool
    def get_weather(city: Literal["Paris", "London", "Tokyo"]) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"It is sunny in {city}."

    client = AsyncOpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        model=OpenAIChatCompletionsModel(model=TOOLS, openai_client=client),
        tools=[get_weather],
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, max_tokens=200
        ),
        tool_use_behavior="stop_on_first_tool",
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert len(seen) == 1 and seen[0] in ("Paris", "London", "Tokyo")
    assert result.final_output == f"It is sunny in {seen[0]}."
