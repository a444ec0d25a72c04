"""What chat and text completions (and edits) share: submit the job, then stream or assemble.

The first event is awaited before answering, so an error the worker finds before generating
(a prompt too long for the context, say) is a plain HTTP error, as with OpenAI. Once a stream has
started, an error goes out as one more SSE frame with the OpenAI error body, then ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import current_app, jsonify

from app.body import read_json
from app.caps import check_choices, check_token_ids
from app.disconnect import client_gone_check
from app.errors import APIError
from app.limits import record_usage
from app.schemas import GenerationSchema, load_request
from app.sse import DONE_FRAME, frame, sse_response
from config.protocol import DONE
from config.registry import CHAT, ModelSpec
from config.results import JobResult, ResultBuilder


class Reply:
    """Identity of one response: its id, creation time and model, shared by all its chunks."""

    def __init__(self, prefix: str, job_id: str, model: str) -> None:
        self.id = f"{prefix}-{job_id}"  # the job id inside, so a response can be traced to its job
        self.created = int(time.time())
        self.model = model
        self.offsets: dict[int, int] = {}  # per choice, characters streamed so far

    def chunk(self, object_name: str, choice: dict | None) -> dict:
        """One streamed chunk of this response, carrying ``choice`` (None: no choice, as the
        last chunk of ``stream_options.include_usage`` has)."""
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice] if choice is not None else [],
        }


@dataclass
class Choice:
    """One choice as the events build it up."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    logprobs: list[dict] = field(default_factory=list)
    echo: dict | None = None
    tool_calls: list[dict] = field(default_factory=list)  # {"id", "name", "arguments"}


class Format(Protocol):
    """How one endpoint family shapes jobs, chunks and responses."""

    schema: GenerationSchema
    prefix: str
    chunk_object: str

    def job_fields(self, data: dict) -> dict: ...
    def check(self, fields: dict, spec: ModelSpec) -> None: ...
    def start_chunks(self, reply: Reply, choices: int) -> list[dict]: ...
    def event_chunks(self, reply: Reply, data: dict, event: dict) -> list[dict]: ...
    def response(self, reply: Reply, data: dict, choices: list[Choice], usage: dict) -> dict: ...


def serve_generation(fmt: Format):
    """Validate the request, run its job, and answer as ``fmt`` shapes it."""
    data, spec, job, choices = prepare(fmt, read_json())
    jobs = current_app.extensions["jobs"]
    gone = client_gone_check()
    if data.get("stream"):
        # Waits for the first event, so an error before it is a plain HTTP error.
        job_id, events = jobs.start(spec, job, gone)
        reply = Reply(fmt.prefix, job_id, data["model"])
        return sse_response(_stream(fmt, reply, data, choices, events))
    events = jobs.collect(spec, job, gone)
    reply = Reply(fmt.prefix, events[0]["job"], data["model"])
    return jsonify(_assemble(fmt, reply, data, choices, iter(events)))


def prepare(fmt: Format, body: Any, live: bool = True) -> tuple[dict, ModelSpec, dict, int]:
    """A request body checked and turned into its job: the loaded data, the model's entry, the
    job and how many choices it makes; :class:`APIError` for anything wrong. ``live``: the model
    must have a live worker now (a batch line may wait for one)."""
    data = load_request(fmt.schema, body)
    fields_ = fmt.job_fields(data)
    prompts = fields_.get("prompts", [None])
    check_choices(len(prompts), data.get("n", 1))
    limit = check_token_ids(prompts, "prompt")
    spec = current_app.extensions["jobs"].resolve(data["model"], CHAT, live)
    fmt.check(fields_, spec)
    job = {
        "params": fmt.schema.sampling(data),
        "user": data.get("user"),
        "max_request_tokens": limit,
        **fields_,
    }
    if data.get("service_tier") == "flex":
        job["priority"] = "bulk"  # in the capacity interactive requests leave, as batch lines
    return data, spec, job, len(prompts) * data.get("n", 1)


def _stream(fmt: Format, reply: Reply, data: dict, choices: int, events: Iterator[dict]):
    usage_chunks = fmt.schema.include_usage(data)
    try:
        for chunk in fmt.start_chunks(reply, choices):
            yield frame(_with_usage(chunk, usage_chunks))
        for event in events:
            if event["type"] == DONE:
                record_usage(event["usage"])
                if usage_chunks:  # OpenAI's stream_options.include_usage: one last chunk
                    yield frame(_usage_chunk(reply, fmt, event["usage"]))
                break
            for chunk in fmt.event_chunks(reply, data, event):
                yield frame(_with_usage(chunk, usage_chunks))
    except APIError as exc:
        yield frame(exc.body)
    yield DONE_FRAME


def _with_usage(chunk: dict, include: bool) -> dict:
    return {**chunk, "usage": None} if include else chunk


def _usage_chunk(reply: Reply, fmt: Format, usage: dict) -> dict:
    return reply.chunk(fmt.chunk_object, None) | {"usage": usage}


def _assemble(fmt: Format, reply: Reply, data: dict, count: int, events: Iterator[dict]) -> dict:
    builder = ResultBuilder()
    for event in events:
        builder.add(event)
    record_usage(builder.result["usage"])
    return render(fmt, reply, data, count, builder.result)


def render(fmt: Format, reply: Reply, data: dict, count: int, result: JobResult) -> dict:
    """The endpoint's response body for a job's result (also a batch line's)."""
    choices = [Choice(index=i) for i in range(count)]
    for c in result["choices"]:
        choice = choices[c["index"]]
        choice.text, choice.finish_reason = c["text"], c["finish_reason"]
        choice.logprobs, choice.echo = c["logprobs"], c["echo"]
        choice.tool_calls = c["tool_calls"]
    return fmt.response(reply, data, choices, result["usage"])


def chat_logprobs(entries: list[dict]) -> dict:
    """Engine logprob entries in the chat API's shape."""

    def one(entry: dict) -> dict:
        return {
            "token": entry["token"],
            "logprob": entry["logprob"],
            # The worker's raw bytes: a token holding part of a character decodes to U+FFFD.
            "bytes": entry["bytes"],
        }

    return {"content": [{**one(e), "top_logprobs": [one(t) for t in e["top"]]} for e in entries]}


def completion_logprobs(entries: list[dict], offset: int) -> dict:
    """Engine logprob entries in the completions API's shape, text offsets from ``offset``."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [
            {t["token"]: t["logprob"] for t in e["top"]} if e["logprob"] is not None else None
            for e in entries
        ],
        "text_offset": offsets,
    }
