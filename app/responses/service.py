"""What the Responses routes do: run a response as a chat job (waited for, streamed, or in the
background), store it, and answer for it from any front."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import current_app

from app.disconnect import client_gone_check
from app.errors import APIError
from app.jobs import ClientGone
from app.limits import record_usage
from app.responses.items import new_id, response_object, status_of, to_messages, with_ids
from app.responses.store import ResponseStore, result_key
from app.responses.stream import ResponseEvents
from config.grammars import TOOL_FORMATS, GrammarError, request_grammar
from config.protocol import DONE, TOKEN, cancel_key
from config.registry import CHAT
from config.results import JobResult, ResultBuilder


def store() -> ResponseStore:
    return current_app.extensions["responses"]


def create(data: dict[str, Any], owner: str):
    """Run the response the request describes; returns the response object, or an iterator of
    SSE frames when it streams."""
    jobs = current_app.extensions["jobs"]
    rid = new_id("resp")
    previous = data.get("previous_response_id")
    history = store().conversation(previous, owner) if previous else []
    items = with_ids(data["input"], rid)
    spec = jobs.resolve(data["model"], CHAT)
    record = new_record(rid, owner, data, items)
    job = chat_job(data, to_messages(history + items, data.get("instructions")), spec)
    if data.get("background"):
        job |= {"id": uuid.uuid4().hex, "result_key": result_key(rid), "result_ttl": store().ttl}
        record["job_id"] = job["id"]
        store().save(record)
        events = jobs.submit_detached(spec, job, listen=bool(data.get("stream")))
        if events is None:
            return response_object(record, None, "queued")
        stream = jobs.iterate(events, cancel=False)  # the run outlives its stream
        return _stream(record, stream, "queued")
    gone = client_gone_check()
    if data.get("stream"):
        _, stream = jobs.start(spec, job, gone)
        return _stream(record, stream, "in_progress")
    try:
        result = _collect(jobs.collect(spec, job, gone))
    except APIError as exc:
        _keep(record, _failure(exc))
        raise
    _keep(record, result)
    return response_object(record, result, status_of(result, "completed"))


def retrieve(response_id: str, owner: str) -> dict[str, Any]:
    record = store().get(response_id, owner)
    result = store().result(response_id)
    return response_object(record, result, status_of(result, _pending_status(record)))


def cancel(response_id: str, owner: str) -> dict[str, Any]:
    record = store().get(response_id, owner)
    if not record["request"]["background"]:
        raise APIError(400, "Only responses created with background=true can be cancelled.", None)
    if store().result(response_id) is None:
        _cancel_run(record)
    return retrieve(response_id, owner)


def delete(response_id: str, owner: str) -> dict[str, Any]:
    record = store().get(response_id, owner)
    if record["request"]["background"] and store().result(response_id) is None:
        _cancel_run(record)
    store().delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def input_items(
    response_id: str, owner: str, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    items = list(store().get(response_id, owner)["input_items"])
    if order == "desc":
        items.reverse()
    ids = [item["id"] for item in items]
    start = ids.index(after) + 1 if after in ids else 0
    page = items[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(items),
    }


# -- helpers -------------------------------------------------------------------------------------


def new_record(rid: str, owner: str, data: dict[str, Any], items: list[dict]) -> dict[str, Any]:
    tools = [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t.get("parameters") or {},
            "strict": t.get("strict", True),
        }
        for t in data.get("tools") or []
    ]
    choice = data.get("tool_choice") or ("auto" if tools else "none")
    if choice not in ("none", "auto", "required"):
        choice = {"type": "function", "name": choice}
    text_format = ((data.get("text") or {}).get("format")) or {"type": "text"}
    return {
        "id": rid,
        "owner": owner,
        "created_at": int(time.time()),
        "model": data["model"],
        "input_items": items,
        "job_id": None,
        "request": {
            "background": bool(data.get("background")),
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "parallel_tool_calls": data.get("parallel_tool_calls") is not False,
            "previous_response_id": data.get("previous_response_id"),
            "store": data.get("store") is not False,
            "temperature": 1.0 if data.get("temperature") is None else data["temperature"],
            "top_p": 1.0 if data.get("top_p") is None else data["top_p"],
            "text_format": text_format,
            "tool_choice": choice,
            "tools": tools,
            "user": data.get("user"),
            "metadata": data.get("metadata") or {},
        },
    }


def chat_job(data: dict[str, Any], messages: list[dict], spec) -> dict[str, Any]:
    """The chat job of a response, its grammar checked (a 400 before anything is queued)."""
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
    except GrammarError as exc:
        param = "text.format" if exc.param == "response_format" else exc.param
        raise APIError(400, str(exc), param=param) from None
    temperature = data.get("temperature")
    top_p = data.get("top_p")
    job: dict[str, Any] = {
        "kind": "chat",
        "messages": messages,
        "user": data.get("user"),
        "max_request_tokens": current_app.config["MAX_REQUEST_TOKENS"],
        "params": {
            "max_tokens": data.get("max_output_tokens"),
            "temperature": 0.0 if top_p == 0 else (1.0 if temperature is None else temperature),
            "top_p": 1.0 if top_p is None else top_p,
            "n": 1,
        },
    }
    if tools and choice != "none":
        job |= {"tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}
    if json_schema is not None:
        job["json_schema"] = json_schema
    return job


def _collect(events: list[dict[str, Any]]) -> JobResult:
    builder = ResultBuilder()
    for event in events:
        builder.add(event)
    record_usage(builder.result["usage"])
    return builder.result


def _stream(record: dict[str, Any], events: Iterator[dict], first_status: str) -> Iterator[str]:
    writer = ResponseEvents(record["id"])
    yield from writer.opening(response_object(record, None, first_status))
    builder = ResultBuilder()
    try:
        for event in events:
            builder.add(event)
            if event["type"] == TOKEN:
                yield from writer.token(event)
            elif event["type"] == DONE:
                record_usage(event.get("usage"))
    except ClientGone:
        _keep(record, _failure(ClientGone()))
        return
    except APIError as exc:
        result = _failure(exc)
        _keep(record, result)
        yield from writer.error(exc.body)
        yield from writer.closing(response_object(record, result, status_of(result, "failed")))
        return
    result = builder.result
    _keep(record, result)
    yield from writer.closing(response_object(record, result, status_of(result, "completed")))


def _keep(record: dict[str, Any], result: JobResult) -> None:
    """Store a response the front waited for (a background run's result the worker stores)."""
    if not record["request"]["store"]:
        return
    if not record["request"]["background"]:
        store().save(record)
    store().set_result(record["id"], result)


def _failure(exc: APIError) -> JobResult:
    error = exc.body["error"]
    cancelled = error.get("code") in ("cancelled", "client_closed_request")
    return {
        "status": "cancelled" if cancelled else "failed",
        "choices": [],
        "usage": {},
        "data": [],
        "error": {"code": error.get("code"), "message": error["message"], "param": error["param"]},
        "finished_at": time.time(),
    }


def _pending_status(record: dict[str, Any]) -> str:
    """The status of a response without a result yet."""
    if not record["request"]["background"]:
        return "in_progress"  # waited for by the front that runs it
    client = store().client
    if client.exists(cancel_key(record["job_id"])):
        return "cancelled"
    return "in_progress" if store().is_claimed(store().running_attempt(record)) else "queued"


def _cancel_run(record: dict[str, Any]) -> None:
    """Stop a background run: its first attempt's id stops any attempt before it starts, and the
    running attempt's id stops it at its engine's next step."""
    client = store().client
    pipe = client.pipeline(transaction=False)
    for job_id in {record["job_id"], store().running_attempt(record)}:
        pipe.set(cancel_key(job_id), 1, ex=store().ttl)
    pipe.execute()
