"""A response request as its chat job: tools, text format, sampling (the Responses API's names
for what a chat job carries)."""

from __future__ import annotations

from typing import Any, cast

from app.errors import APIError, request_param
from app.reasoning import ReasoningControls
from app.responses.items import RESPONSE_PARAMS
from config.grammars import TOOL_FORMATS, GrammarError, request_grammar
from config.protocol import Job, JobOptions, Params, Tool, chat_job
from config.registry import ModelSpec


def response_job(
    spec: ModelSpec,
    data: dict[str, Any],
    messages: list[dict[str, Any]],
    max_request_tokens: int,
    options: JobOptions,
) -> Job:
    """The chat job of a response request (``data``, loaded) whose conversation is
    ``messages``, with ``options`` besides its own; its grammar checked (a 400 before anything
    is queued). ``max_request_tokens``: MAX_REQUEST_TOKENS, which the job carries."""
    # A tool without parameters goes as the client gave it: its description in the prompt
    # is the client's, so the worker's reply is the same as ever.
    tools = [
        {k: t[k] for k in ("name", "description", "parameters") if t.get(k) is not None}
        for t in data.get("tools") or []
    ]
    choice = data.get("tool_choice") or ("auto" if tools else "none")
    fmt = ((data.get("text") or {}).get("format")) or {"type": "text"}
    json_schema = {"json_object": {}, "json_schema": fmt.get("schema") or {}}.get(fmt["type"])
    parallel = data.get("parallel_tool_calls") is not False
    try:
        request_grammar(json_schema, tools, choice, parallel, TOOL_FORMATS[spec.tool_format])
    except GrammarError as exc:  # it names a field of the job: the request's name for it
        raise APIError(400, str(exc), param=request_param(exc.param, RESPONSE_PARAMS)) from None
    temperature = data.get("temperature")
    top_p = data.get("top_p")
    own: JobOptions = {
        "user": data.get("user"),
        "max_request_tokens": max_request_tokens,
    }
    if tools and choice != "none":
        own["tools"] = cast(list[Tool], tools)  # see above: perhaps without parameters
        own |= {"tool_choice": choice, "parallel_tool_calls": parallel}
    if json_schema is not None:
        own["json_schema"] = json_schema
    own.update(options)
    params: Params = {
        "max_tokens": data.get("max_output_tokens"),
        "temperature": 0.0 if top_p == 0 else (1.0 if temperature is None else temperature),
        "top_p": 1.0 if top_p is None else top_p,
        "n": 1,
    }
    effort = (data.get("reasoning") or {}).get("effort")
    ReasoningControls(effort).apply(spec, params, own)
    return chat_job(spec.name, messages, params, **own)
