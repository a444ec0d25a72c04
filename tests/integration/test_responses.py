"""The Responses API through the openai SDK (sync, async, streaming, background, retrieve,
input items, delete, cancel, structured output, a function-call round trip) and the OpenAI Agents
SDK's default OpenAIResponsesModel; stored responses across fronts, owners, and a background run
that outlives its front and its worker."""

import asyncio
import json
import os
import signal

import jsonschema
import openai
import pytest

from config.keys import finished_key
from tests.integration.conftest import FAULTY, FAULTY_RERUN, TOOLS
from tests.integration.test_abandoned import running, wait_for

pytestmark = pytest.mark.usefixtures("tools_worker")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "London", "Tokyo"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_create_retrieve_list_delete(openai_client):
    response = openai_client.responses.create(
        model=TOOLS,
        input="Say hello.",
        instructions="Be brief.",
        max_output_tokens=6,
        temperature=0,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "incomplete"  # the tiny model never stops by itself
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text and response.usage.output_tokens == 6
    again = openai_client.responses.retrieve(response.id)
    assert again.output_text == response.output_text and again.status == "incomplete"
    items = openai_client.responses.input_items.list(response.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[
        0
    ].text == "Say hello."
    deleted = openai_client.responses.delete(response.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)


def test_input_items_paginate(openai_client):
    inputs = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    response = openai_client.responses.create(model=TOOLS, input=inputs, max_output_tokens=2)
    first = openai_client.responses.input_items.list(response.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["message 0", "message 1"]
    assert first.has_more
    rest = openai_client.responses.input_items.list(
        response.id, limit=10, order="asc", after=first.last_id
    )
    assert [i.content[0].text for i in rest.data] == ["message 2", "message 3", "message 4"]
    assert not rest.has_more


def test_async_create(openai_client):
    async def run():
        client = openai.AsyncOpenAI(base_url=str(openai_client.base_url), api_key="EMPTY")
        response = await client.responses.create(
            model=TOOLS, input="Hi", max_output_tokens=4, temperature=0
        )
        await client.close()
        return response

    assert asyncio.run(run()).usage.output_tokens == 4


def test_streamed_events_follow_openai_s_sequence(openai_client):
    events = list(
        openai_client.responses.create(
            model=TOOLS, input="Hi", max_output_tokens=5, stream=True, temperature=0
        )
    )
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == deltas and final.usage.output_tokens == 5
    assert openai_client.responses.retrieve(final.id).output_text == deltas


def test_streamed_function_calls(openai_client):
    events = list(
        openai_client.responses.create(
            model=TOOLS,
            input="Weather?",
            tools=[WEATHER],
            tool_choice="required",
            stream=True,
            # Parallel calls, sampled, may run until the context cuts the last one.
            parallel_tool_calls=False,
        )
    )
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    assert "response.output_text.delta" not in types
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and all(
        json.loads(e.arguments)["city"] in ("Paris", "London", "Tokyo") for e in done
    )
    assert types[-1] == "response.completed"
    calls = [i for i in events[-1].response.output if i.type == "function_call"]
    assert [c.arguments for c in calls] == [e.arguments for e in done]


def test_text_format_json_schema(openai_client):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 99},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = openai_client.responses.create(
        model=TOOLS,
        input="A person, as JSON.",
        text={
            "format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
        },
        max_output_tokens=200,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), schema)


def test_a_function_call_round_trip_through_previous_response_id(openai_client):
    first = openai_client.responses.create(
        model=TOOLS,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    (call,) = [i for i in first.output if i.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    second = openai_client.responses.create(
        model=TOOLS,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=3,
        temperature=0,  # a sampled reply may end at once, with no text to see
    )
    assert second.previous_response_id == first.id and second.output_text
    # The chain reached the model: the first turn and its call, before the call's output.
    alone = openai_client.responses.create(model=TOOLS, input="18 C", max_output_tokens=1)
    assert second.usage.input_tokens > alone.usage.input_tokens + 20
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.responses.create(model=TOOLS, previous_response_id="resp_nope", input="x")
    assert error.value.body["param"] == "previous_response_id"


def poll(client, response_id, until=("completed", "incomplete", "failed", "cancelled")):
    return wait_for(
        lambda: (r := client.responses.retrieve(response_id)).status in until and r, timeout=60
    )


def test_background_runs_and_is_polled(openai_client):
    response = openai_client.responses.create(
        model=TOOLS, input="Hi", max_output_tokens=5, background=True, temperature=0
    )
    assert response.status == "queued" and response.background
    done = poll(openai_client, response.id)
    assert done.status == "incomplete" and done.usage.output_tokens == 5


def test_background_streams_too(openai_client):
    events = list(
        openai_client.responses.create(
            model=TOOLS,
            input="Hi",
            max_output_tokens=4,
            background=True,
            stream=True,
            temperature=0,
        )
    )
    assert events[0].response.status == "queued" and events[-1].type == "response.incomplete"
    assert poll(openai_client, events[-1].response.id).usage.output_tokens == 4


def test_a_background_run_is_cancelled(front, openai_client, faulty_worker, redis_client):
    # The slowed faulty model (20 ms a token), greedy so that it cannot sample its end-of-text
    # early: the run is still going when the polls see it, however busy CI is.
    response = openai_client.responses.create(
        model=FAULTY, input="Write forever.", max_output_tokens=200, background=True, temperature=0
    )
    poll(openai_client, response.id, until=("in_progress",))
    wait_for(lambda: running(front, FAULTY) == 1, 10)  # its row is in the engine
    cancelled = openai_client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert poll(openai_client, response.id).status == "cancelled"
    # The worker stopped it, not only the key the cancel wrote: its engine recorded the run as
    # cancelled and freed its row, with 200 tokens at 20 ms a step still seconds from done.
    job_id = json.loads(redis_client.get(f"llm:response:{response.id}"))["job_id"]
    assert wait_for(lambda: redis_client.get(finished_key(job_id)), 10) == "error:cancelled"
    wait_for(lambda: running(front, FAULTY) == 0, 5)
    with pytest.raises(openai.BadRequestError):  # only background responses can be cancelled
        foreground = openai_client.responses.create(model=TOOLS, input="x", max_output_tokens=1)
        openai_client.responses.cancel(foreground.id)


@pytest.fixture(scope="module")
def keyed_front(stack):
    return stack.front(API_KEYS="key-one,key-two")


def test_a_response_belongs_to_the_key_that_made_it(keyed_front):
    one = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-one", max_retries=0)
    two = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-two", max_retries=0)
    mine = one.responses.create(model=TOOLS, input="Hi", max_output_tokens=2)
    assert one.responses.retrieve(mine.id).id == mine.id
    for attempt in (
        lambda: two.responses.retrieve(mine.id),
        lambda: two.responses.input_items.list(mine.id),
        lambda: two.responses.cancel(mine.id),
        lambda: two.responses.delete(mine.id),
        lambda: two.responses.create(model=TOOLS, input="x", previous_response_id=mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert one.responses.retrieve(mine.id).id == mine.id  # not deleted by the other key


def test_keys_are_stored_as_keyed_hashes(keyed_front, redis_client):
    one = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-one", max_retries=0)
    response = one.responses.create(model=TOOLS, input="Hi", max_output_tokens=1)
    raw = redis_client.get(f"llm:response:{response.id}")
    assert "key-one" not in raw and json.loads(raw)["owner"]


def test_any_front_serves_a_stored_response_and_a_background_run_outlives_its_front(
    stack, front, openai_client
):
    other = stack.front()
    client = openai.OpenAI(base_url=f"{other}/v1", api_key="EMPTY", max_retries=0)
    response = client.responses.create(
        model=TOOLS, input="Hi", max_output_tokens=300, background=True, temperature=0
    )
    process = stack.processes[-1]
    os.killpg(process.pid, signal.SIGKILL)  # the front that created it is gone
    done = poll(openai_client, response.id)
    assert done.usage.output_tokens == 300


def test_a_background_run_outlives_its_worker(stack, front, openai_client, redis_client):
    """The workers run it again (their reaper) once its worker's heartbeat lapses."""
    # Slow enough (45 s for its run) that the second worker is up before the first is done.
    doomed = stack.worker([FAULTY_RERUN], front, FAULTY_STEP_DELAY="0.3")
    response = openai_client.responses.create(
        model=FAULTY_RERUN, input="Hi", max_output_tokens=150, background=True, temperature=0
    )
    poll(openai_client, response.id, until=("in_progress",))
    stack.worker([FAULTY_RERUN], front)  # a second worker, then the first dies mid-run
    os.killpg(doomed.pid, signal.SIGKILL)
    done = poll(openai_client, response.id)
    assert done.status == "incomplete" and done.usage.output_tokens == 150
    record = json.loads(redis_client.get(f"llm:response:{response.id}"))
    attempts = json.loads(redis_client.get(f"llm:detached:{record['job_id']}"))["attempts"]
    assert attempts == 2


def test_the_agents_sdk_default_responses_model_calls_a_tool(front):
    from typing import Literal

    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    seen = []

    @function_tool
    def get_weather(city: Literal["Paris", "London", "Tokyo"]) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"It is sunny in {city}."

    client = openai.AsyncOpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        model=OpenAIResponsesModel(model=TOOLS, openai_client=client),
        tools=[get_weather],
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, max_tokens=200
        ),
        tool_use_behavior="stop_on_first_tool",
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert len(seen) == 1 and result.final_output == f"It is sunny in {seen[0]}."


def test_built_in_tools_are_refused(openai_client):
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.responses.create(model=TOOLS, input="x", tools=[{"type": "web_search"}])
    assert "not supported" in error.value.body["message"]


def test_a_named_tool_choice_is_the_one_called(openai_client):
    ping = {"type": "function", "name": "ping", "parameters": {"type": "object"}}
    for temperature in (0.0, 1.0):
        response = openai_client.responses.create(
            model=TOOLS,
            input="What is the weather in Paris?",
            tools=[ping, WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            temperature=temperature,
            max_output_tokens=200,
        )
        assert response.status == "completed"
        (call,) = response.output
        assert call.type == "function_call" and call.name == "get_weather"
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
        assert response.tool_choice.name == "get_weather"


def test_a_call_cut_by_max_output_tokens_is_an_incomplete_item(openai_client):
    # A string longer than 60 tokens can hold: the reply ends inside it.
    city = {"type": "string", "minLength": 500}
    parameters = {"type": "object", "properties": {"city": city}, "required": ["city"]}
    free = {**WEATHER, "parameters": parameters}
    args = {
        "model": TOOLS,
        "input": "Weather?",
        "tools": [free],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 60,
        "temperature": 0,
    }
    response = openai_client.responses.create(**args)
    assert response.status == "incomplete"
    (call,) = response.output
    assert call.type == "function_call" and call.status == "incomplete"
    assert call.arguments.startswith("{") and call.arguments != "{}"  # as far as it got
    with pytest.raises(ValueError):
        json.loads(call.arguments)
    events = list(openai_client.responses.create(**args, stream=True))
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [e.item.status for e in done] == ["incomplete"]
    assert done[0].item.arguments == call.arguments  # greedy: the same reply
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output[0].status == "incomplete"
