"""The Responses API's shapes: requests loaded to items, items to chat messages, results to
output items, and the typed event sequence of a stream."""

import json

import pytest

from app.errors import APIError
from app.responses.items import output_items, status_of, to_messages, with_ids
from app.responses.schema import ResponseCreateSchema
from app.responses.stream import ResponseEvents
from app.schemas import load_request
from config.events import EventSequence
from config.results import ResultBuilder


def load(**body):
    return load_request(ResponseCreateSchema(), {"model": "m", **body})


def test_input_loads_to_items():
    assert load(input="Hi")["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    ]
    items = load(
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "x"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ]
    )["input"]
    assert [i["type"] for i in items] == ["message", "function_call", "function_call_output"]


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": [{"type": "image", "url": "x"}]},
        {"input": "x", "tools": [{"type": "web_search"}]},
        {"input": "x", "tool_choice": "required"},
        {"input": "x", "background": True, "store": False},
        {"input": "x", "text": {"format": {"type": "json_schema"}}},
    ],
)
def test_bad_requests_are_400s(body):
    with pytest.raises(APIError) as error:
        load(**body)
    assert error.value.status == 400


def test_items_become_chat_messages_with_parallel_calls_in_one_turn():
    items = with_ids(
        load(
            input=[
                {"role": "user", "content": "Weather in Paris and Tokyo?"},
                {"type": "function_call", "call_id": "a", "name": "w", "arguments": '{"c": 1}'},
                {"type": "function_call", "call_id": "b", "name": "w", "arguments": '{"c": 2}'},
                {"type": "function_call_output", "call_id": "a", "output": "18"},
                {"type": "function_call_output", "call_id": "b", "output": "25"},
            ]
        )["input"],
        "resp_1",
    )
    assert len({i["id"] for i in items}) == 5
    messages = to_messages(items, "Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["a", "b"]


def finished(events):
    builder = ResultBuilder()
    for event in events:
        builder.add(event)
    return builder.result


def token(text, finish_reason=None, **fields):
    return {"index": 0, "text": text, "token_ids": [], "finish_reason": finish_reason, **fields}


def test_a_result_becomes_output_items_and_a_status():
    seq = EventSequence("j")
    call = {"index": 0, "id": "call_1", "name": "w", "arguments": '{"c"'}
    rest = {"index": 0, "arguments": ": 1}"}
    result = finished(
        [
            seq.token(token("Let me check.")),
            seq.token(token("", tool_calls=[call])),
            seq.token(token("", tool_calls=[rest], finish_reason="tool_calls")),
            seq.done({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
        ]
    )
    items = output_items("resp_9", result)
    assert [i["type"] for i in items] == ["message", "function_call"]
    assert items[0]["content"][0]["text"] == "Let me check."
    assert (items[1]["call_id"], items[1]["arguments"]) == ("call_1", '{"c": 1}')
    assert status_of(result, "x") == "completed"


def sse(frames):
    return [json.loads(f.split("data: ", 1)[1]) for f in frames]


def test_the_stream_s_events_come_in_openai_s_order():
    writer = ResponseEvents("resp_1")
    frames = writer.opening({"id": "resp_1", "status": "in_progress"})
    frames += writer.token({"text": "Hi", "tool_calls": []})
    frames += writer.token({"text": " there", "tool_calls": []})
    frames += writer.token(
        {"text": "", "tool_calls": [{"index": 0, "id": "call_1", "name": "w", "arguments": ""}]}
    )
    frames += writer.token({"text": "", "tool_calls": [{"index": 0, "arguments": "{}"}]})
    frames += writer.closing({"id": "resp_1", "status": "completed"})
    events = sse(frames)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hi there" and events[11]["arguments"] == "{}"
    assert [e.get("output_index") for e in events[2:13]] == [0] * 7 + [1] * 4
