"""Between the Responses API's shapes and the chat job's: input items to chat messages, a job's
result to output items and a response object. Output items get ids derived from the response's
id, so every front (and the stream) names them alike."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from app.errors import from_worker, param_names
from config.events import Usage
from config.protocol import LENGTH
from config.results import COMPLETED, JobResult

# The Responses API's names for a chat job's fields, in errors (see app.errors.param_names).
RESPONSE_PARAMS = param_names(
    messages="input", params__max_tokens="max_output_tokens", json_schema="text.format"
)


# The prefix of an input item's id, by its type.
ITEM_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def with_ids(items: list[dict[str, Any]], response_id: str) -> list[dict[str, Any]]:
    """The request's input items, each with an id (kept when the client gave one)."""
    suffix = response_id.removeprefix("resp_")
    return [
        {"id": item.get("id") or f"{ITEM_PREFIXES[item['type']]}_{suffix}_in{i}", **item}
        for i, item in enumerate(items)
    ]


def to_messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """Input items (the chain's, then the request's) as chat messages; ``instructions`` first,
    as a system message (they are the request's own: a chain does not carry them over)."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            continue  # earlier thinking: chat templates leave it out of the prompt too
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": message_text(item)})
        elif kind == "function_call":
            call = {"id": item["call_id"], "name": item["name"], "arguments": item["arguments"]}
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:
            messages.append(
                {"role": "tool", "content": item["output"], "tool_call_id": item["call_id"]}
            )
    return messages


def new_record(
    rid: str, owner: str, data: dict[str, Any], items: list[dict[str, Any]]
) -> dict[str, Any]:
    """What is stored of a response (``llm:response:<id>``): its owner, its input items, the job
    that runs it (``job_id``, a background run's) and its request's parameters, as the response
    object shows them."""
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
            "conversation": data.get("conversation"),
            "store": data.get("store") is not False,
            "temperature": 1.0 if data.get("temperature") is None else data["temperature"],
            "top_p": 1.0 if data.get("top_p") is None else data["top_p"],
            "text_format": text_format,
            "reasoning": {k: (data.get("reasoning") or {}).get(k) for k in ("effort", "summary")},
            "tool_choice": choice,
            "tools": tools,
            "user": data.get("user"),
            "metadata": data.get("metadata") or {},
        },
    }


def message_text(item: dict[str, Any]) -> str:
    return "".join(part["text"] for part in item["content"])


def message_id(response_id: str) -> str:
    return f"msg_{response_id.removeprefix('resp_')}"


def call_item_id(response_id: str, index: int) -> str:
    return f"fc_{response_id.removeprefix('resp_')}_{index}"


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(response_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """The reply's message; ``in_progress`` (opened, nothing yet), ``completed``, or
    ``incomplete`` (cut by ``max_output_tokens``, with the text it has)."""
    content = [text_part(text)] if status != "in_progress" else []
    return {
        "id": message_id(response_id),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def reasoning_id(response_id: str) -> str:
    return f"rs_{response_id.removeprefix('resp_')}"


def reasoning_item(response_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """The reply's thinking (a reasoning model's): its text as one ``reasoning_text`` part;
    no summary, nothing encrypted (the text is the client's to keep)."""
    content = [{"type": "reasoning_text", "text": text}] if status != "in_progress" else []
    return {
        "id": reasoning_id(response_id),
        "type": "reasoning",
        "status": status,
        "summary": [],
        "content": content,
        "encrypted_content": None,
    }


def call_item(
    response_id: str, index: int, call: Mapping[str, Any], status: str = "completed"
) -> dict[str, Any]:
    """A function call item, from a call's ``id``, ``name`` and ``arguments``."""
    return {
        "id": call_item_id(response_id, index),
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": call["name"],
        "arguments": call["arguments"] if status != "in_progress" else "",
    }


def output_items(response_id: str, result: JobResult | None) -> list[dict[str, Any]]:
    """A result's output: the thinking (a reasoning model's), the message (if the model wrote
    text), then its function calls; in a reply cut by ``max_output_tokens``, the last of them is
    ``incomplete`` (a call's arguments then as far as they got, not valid JSON)."""
    if not result or not result.get("choices"):
        return []
    choice = result["choices"][0]
    thought = choice.get("reasoning")
    items = [reasoning_item(response_id, thought)] if thought else []
    if choice["text"]:
        items.append(message_item(response_id, choice["text"]))
    calls = choice["tool_calls"]
    for index, call in enumerate(calls):
        items.append(
            call_item(response_id, index, {**call, "arguments": call["arguments"] or "{}"})
        )
    if items and choice["finish_reason"] == LENGTH:
        last = items[-1]
        if last["type"] == "function_call":
            last["arguments"] = calls[-1]["arguments"]
        last["status"] = "incomplete"
    return items


def usage(raw: Usage | dict[str, int] | None) -> dict[str, Any] | None:
    """A job's usage as the Responses API counts it."""
    if not raw:
        return None
    details = raw.get("prompt_tokens_details")
    thought = raw.get("completion_tokens_details")
    return {
        "input_tokens": raw.get("prompt_tokens", 0),
        "input_tokens_details": {
            "cached_tokens": details.get("cached_tokens", 0) if isinstance(details, dict) else 0
        },
        "output_tokens": raw.get("completion_tokens", 0),
        "output_tokens_details": {
            "reasoning_tokens": thought.get("reasoning_tokens", 0)
            if isinstance(thought, dict)
            else 0
        },
        "total_tokens": raw.get("total_tokens", 0),
    }


def status_of(result: JobResult | None, fallback: str) -> str:
    """A response's status from its result; ``fallback`` while it has none."""
    if result is None:
        return fallback
    if result["status"] == COMPLETED:
        choices = result["choices"]
        cut = bool(choices) and choices[0]["finish_reason"] == LENGTH
        return "incomplete" if cut else COMPLETED
    return result["status"]


def response_object(
    record: dict[str, Any], result: JobResult | None, status: str
) -> dict[str, Any]:
    """The response in OpenAI's shape, from its stored record and (once it ended) its result."""
    error = None
    failure = result["error"] if result else None
    if status == "failed" and failure:
        # A worker's message may name the job's field at fault as {param}: the request's name.
        message = failure.get("message")
        if message:
            message = from_worker(failure, RESPONSE_PARAMS).body["error"]["message"]
        error = {
            "code": failure.get("code") or "server_error",
            "message": message or "The response failed.",
        }
    request = record["request"]
    return {
        "id": record["id"],
        "object": "response",
        "created_at": record["created_at"],
        "status": status,
        "background": request["background"],
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request["instructions"],
        "max_output_tokens": request["max_output_tokens"],
        "model": record["model"],
        "output": output_items(record["id"], result)
        if status in ("completed", "incomplete")
        else [],
        "parallel_tool_calls": request["parallel_tool_calls"],
        "previous_response_id": request["previous_response_id"],
        # Records stored before conversations have no such entry.
        "conversation": {"id": conv} if (conv := request.get("conversation")) else None,
        # Records stored before reasoning efforts have no such entry.
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request["store"],
        "temperature": request["temperature"],
        "text": {"format": request["text_format"]},
        "tool_choice": request["tool_choice"],
        "tools": request["tools"],
        "top_p": request["top_p"],
        "truncation": "disabled",
        "usage": usage(result.get("usage")) if result else None,
        "user": request["user"],
        "metadata": request["metadata"],
    }
