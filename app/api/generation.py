"""What chat and text completions share: submit the job, then stream or assemble its events.

The first event is awaited before answering, so an error the worker finds before generating
(a prompt too long for the context, say) is a plain HTTP error, as with OpenAI. Once a stream has
started, an error goes out as one more SSE frame with the OpenAI error body, then ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from flask import current_app, jsonify, request

from app.errors import APIError
from app.schemas import _GenerationSchema, load_request
from app.sse import DONE_FRAME, frame, sse_response
from config.protocol import DONE
from config.registry import CHAT


class Reply:
    """Identity of one response: its id, creation time and model, shared by all its chunks."""

    def __init__(self, prefix: str, job_id: str, model: str) -> None:
        self.id = f"{prefix}-{job_id}"  # the job id inside, so a response can be traced to its job
        self.created = int(time.time())
        self.model = model


class Format(Protocol):
    """How one endpoint family shapes jobs, chunks and responses."""

    schema: _GenerationSchema
    prefix: str

    def job_fields(self, data: dict) -> dict: ...
    def start_chunks(self, reply: Reply, data: dict, choices: int) -> list[dict]: ...
    def chunk(self, reply: Reply, index: int, text: str, finish_reason: str | None) -> dict: ...
    def response(self, reply: Reply, data: dict, choices: list[dict], usage: dict) -> dict: ...


def serve_generation(fmt: Format):
    data = load_request(fmt.schema, request.get_json(force=True, silent=True))
    jobs = current_app.extensions["jobs"]
    spec = jobs.resolve(data["model"], CHAT)
    fields = fmt.job_fields(data)
    job = {"params": fmt.schema.sampling(data), "user": data.get("user"), **fields}
    stream = jobs.submit(spec, job)
    events = jobs.iterate(stream)
    first = next(events)  # raises the worker's error as an HTTP error, before any byte is sent
    reply = Reply(fmt.prefix, stream.job_id, data["model"])
    choices = len(fields.get("prompts", [None]))
    if data["stream"]:
        return sse_response(_stream(fmt, reply, data, choices, first, events))
    return jsonify(_assemble(fmt, reply, data, choices, first, events))


def _with_first(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def _stream(fmt: Format, reply: Reply, data: dict, choices: int, first: dict, rest: Iterator[dict]):
    try:
        for chunk in fmt.start_chunks(reply, data, choices):
            yield frame(chunk)
        for event in _with_first(first, rest):
            if event["type"] == DONE:
                break
            if event["text"]:
                yield frame(fmt.chunk(reply, event["index"], event["text"], None))
            if event["finish_reason"]:
                yield frame(fmt.chunk(reply, event["index"], "", event["finish_reason"]))
    except APIError as exc:
        yield frame(exc.body)
    yield DONE_FRAME


def _assemble(
    fmt: Format, reply: Reply, data: dict, choices: int, first: dict, rest: Iterator[dict]
):
    texts = [[] for _ in range(choices)]
    reasons: list[Any] = [None] * choices
    usage = {}
    for event in _with_first(first, rest):
        if event["type"] == DONE:
            usage = event["usage"]
            break
        texts[event["index"]].append(event["text"])
        reasons[event["index"]] = event["finish_reason"] or reasons[event["index"]]
    results = [
        {"index": i, "text": "".join(parts), "finish_reason": reasons[i]}
        for i, parts in enumerate(texts)
    ]
    return fmt.response(reply, data, results, usage)
