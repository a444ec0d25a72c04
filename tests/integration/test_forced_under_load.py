"""Forced tools and structured outputs under load: while free-text streams
run, rounds of concurrent constrained requests of every kind (a named tool, ``required``,
``parallel_tool_calls`` false, ``json_schema``, ``json_object``; through chat completions and
the Responses API; some sharing a long system prompt with earlier requests, some continuing a
stored response with ``previous_response_id``) go to one long-running stack. Every reply must
follow its tool schema or its format: a forced request is never answered in free text.

The model is the tiny random one, which writes noise when free, so any reply that escaped its
grammar shows; ``MODEL`` may name another (the real SmolLM2, for a longer run by hand)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import pytest

from tests.integration.conftest import TOOLS

pytestmark = pytest.mark.usefixtures("tools_worker")

MODEL = TOOLS

ROUNDS = 3
CITY = {"type": "string", "maxLength": 12}
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": CITY, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMS = {
    "type": "object",
    "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
PARAMS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
# A long shared system prompt: requests that carry it reuse its blocks from the prefix cache.
SYSTEM = "You are a careful assistant for a travel agency. " * 12


def chat_tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": name, "parameters": params, "strict": True}}
        for name, params in PARAMS.items()
    ]


def response_tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "name": name, "parameters": params, "strict": True}
        for name, params in PARAMS.items()
    ]


def check_calls(calls: list[tuple[str, str]], kind: str, cut: bool) -> None:
    """Calls (name, arguments) as the request's kind forces them; a reply ``cut`` by its token
    limit may end inside its last call."""
    assert calls or cut, f"{kind}: no tool call"
    for name, arguments in calls[:-1] if cut else calls:
        jsonschema.validate(json.loads(arguments), PARAMS[name])
    if kind == "named":
        assert {name for name, _ in calls} <= {"get_weather"}
    if kind in ("named", "single"):
        assert len(calls) <= 1


def check_text(text: str, kind: str) -> None:
    value = json.loads(text)
    if kind == "json_schema":
        jsonschema.validate(value, PERSON)
    else:
        assert isinstance(value, dict)


def chat_request(client, kind: str, shared: bool, temperature: float) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris, and the time?"}]
    if shared:
        messages.insert(0, {"role": "system", "content": SYSTEM})
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": 160,
    }
    if kind in ("named", "required", "single"):
        args["tools"] = chat_tools()
        args["tool_choice"] = (
            {"type": "function", "function": {"name": "get_weather"}}
            if kind == "named"
            else "required"
        )
        if kind == "single":
            args["parallel_tool_calls"] = False
    elif kind == "json_schema":
        args["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        }
    else:
        args["response_format"] = {"type": "json_object"}
    choice = client.chat.completions.create(**args).choices[0]
    if kind in ("named", "required", "single"):
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        assert not choice.message.content, f"{kind}: text {choice.message.content!r}"
        assert choice.finish_reason in ("tool_calls", "length"), choice.finish_reason
        check_calls(calls, kind, choice.finish_reason == "length")
    else:
        assert choice.finish_reason == "stop", f"{kind}: {choice.finish_reason}"
        check_text(choice.message.content, kind)


def response_request(
    client, kind: str, shared: bool, temperature: float, previous: str | None
) -> None:
    args: dict[str, Any] = {
        "model": MODEL,
        "input": "Weather in Paris?",
        "temperature": temperature,
        "max_output_tokens": 160,
    }
    if shared:
        args["instructions"] = SYSTEM
    if previous:
        args["previous_response_id"] = previous
    if kind in ("named", "required", "single"):
        args["tools"] = response_tools()
        args["tool_choice"] = (
            {"type": "function", "name": "get_weather"} if kind == "named" else "required"
        )
        if kind == "single":
            args["parallel_tool_calls"] = False
    elif kind == "json_schema":
        args["text"] = {
            "format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
        }
    else:
        args["text"] = {"format": {"type": "json_object"}}
    response = client.responses.create(**args)
    kinds = [item.type for item in response.output]
    if kind in ("named", "required", "single"):
        assert response.status in ("completed", "incomplete"), response.status
        assert set(kinds) <= {"function_call"}, f"{kind}: {response.output}"
        calls = [(item.name, item.arguments) for item in response.output]
        check_calls(calls, kind, response.status == "incomplete")
    else:
        assert response.status == "completed", f"{kind}: {response.status} {response.output}"
        assert kinds == ["message"], f"{kind}: {kinds}"
        check_text(response.output_text, kind)


KINDS = ("named", "required", "single", "json_schema", "json_object")


def test_forced_replies_always_follow_their_schema_under_load(openai_client):
    previous = openai_client.responses.create(
        model=MODEL, input="Remember: I live in Paris.", max_output_tokens=16
    ).id
    stop = threading.Event()
    streamed = []

    def free_stream() -> None:  # free text, streamed, beside the constrained requests
        while not stop.is_set():
            stream = openai_client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Tell me a long story about a queue."}],
                max_tokens=96,
                stream=True,
            )
            streamed.append(sum(1 for _ in stream))

    requests = []
    for number in range(30):
        kind = KINDS[number % len(KINDS)]
        shared, temperature = number % 3 != 0, (0.0, 0.7, 1.0)[number % 3]
        if kind == "json_object":  # any object: sampled, a string may run on past max_tokens
            temperature = 0.0
        if number % 2:
            requests.append((chat_request, (kind, shared, temperature)))
        else:
            chained = previous if number % 4 == 0 else None
            requests.append((response_request, (kind, shared, temperature, chained)))

    validated, broken = 0, []
    with ThreadPoolExecutor(4) as streams:
        for _ in range(4):
            streams.submit(free_stream)
        try:
            for _ in range(ROUNDS):
                with ThreadPoolExecutor(len(requests)) as pool:
                    futures = [pool.submit(f, openai_client, *args) for f, args in requests]
                    for (f, args), future in zip(requests, futures, strict=True):
                        try:
                            future.result()
                            validated += 1
                        except Exception as exc:  # noqa: BLE001 - every broken reply is listed
                            broken.append(f"{f.__name__}{args}: {exc!r}")
        finally:
            stop.set()
    total = ROUNDS * len(requests)
    print(f"\n{ROUNDS} rounds, {total} constrained requests, {validated} replies validated, ")
    print(f"{len(streamed)} free-text streams beside them")
    assert not broken, "\n".join(broken)
    assert validated == total and streamed
