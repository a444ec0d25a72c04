"""What chat and text completions (and edits) share: submit the job, then stream or assemble.

The first event is awaited before answering, so an error the worker finds before generating
(a prompt too long for the context, say) is a plain HTTP error, as with OpenAI. Once a stream has
started, an error goes out as one more SSE frame with the OpenAI error body, then ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.caps import Caps
from app.disconnect import client_gone_check
from app.errors import JOB_PARAMS, APIError
from app.jobs import JobService
from app.limits import RateLimiter
from app.schemas import GenerationSchema, load_request
from app.sse import DONE_FRAME, Answer, frame
from config.events import Event, TokenEvent, Usage
from config.protocol import BULK, DONE, TOKEN, Job, JobOptions, Params, Prompt
from config.registry import CHAT, ModelSpec
from config.results import ChoiceResult, JobResult, ResultBuilder

Chunk = dict[str, Any]  # one streamed chunk, or a response body, in the endpoint's shape
# A result's usage: the done event's (config.results keeps it as a plain dict, {} for none).
ResultUsage = Usage | dict[str, int]


class Reply:
    """Identity of one response: its id, creation time and model, shared by all its chunks."""

    def __init__(self, prefix: str, job_id: str, model: str) -> None:
        self.id = f"{prefix}-{job_id}"  # the job id inside, so a response can be traced to its job
        self.created = int(time.time())
        self.model = model
        self.offsets: dict[int, int] = {}  # per choice, characters streamed so far

    def chunk(self, object_name: str, choice: dict[str, Any] | None) -> Chunk:
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


class Format:
    """How one endpoint family shapes jobs, chunks and responses (chat, completions, edits)."""

    schema: GenerationSchema
    prefix: str
    chunk_object: str
    names: dict[str, str] = JOB_PARAMS  # the request's names for its job's fields, in errors

    def prompts(self, data: dict[str, Any]) -> list[Prompt] | None:
        """The request's prompts, each one or more choices; None: one conversation."""
        return None

    def job(
        self, spec: ModelSpec, data: dict[str, Any], params: Params, options: JobOptions
    ) -> Job:
        """The request's job for the model ``spec``; a 400 if it cannot run (a bad schema)."""
        raise NotImplementedError

    def start_chunks(self, reply: Reply, choices: int) -> list[Chunk]:
        """The chunks a stream opens with, before any event."""
        return []

    def event_chunks(self, reply: Reply, data: dict[str, Any], event: TokenEvent) -> list[Chunk]:
        """The chunks of one token event."""
        return []

    def response(
        self, reply: Reply, data: dict[str, Any], choices: list[ChoiceResult], usage: ResultUsage
    ) -> Chunk:
        """The whole response, from every choice's result."""
        raise NotImplementedError


@dataclass(frozen=True)
class Prepared:
    """A generation request checked and turned into its job: the loaded request, the model's
    entry, the job, and how many choices it makes."""

    data: dict[str, Any]
    spec: ModelSpec
    job: Job
    choices: int


class GenerationService:
    """Chat completions, text completions and edits, each shaped by its :class:`Format`."""

    def __init__(self, jobs: JobService, limits: RateLimiter, caps: Caps) -> None:
        self.jobs = jobs
        self.limits = limits
        self.caps = caps

    def serve(self, fmt: Format, body: Any) -> Answer:
        """Validate the request, run its job, and answer as ``fmt`` shapes it: the response,
        or the frames of its stream."""
        prepared = self.prepare(fmt, body)
        data, spec, job = prepared.data, prepared.spec, prepared.job
        gone = client_gone_check()
        if data.get("stream"):
            # Waits for the first event, so an error before it is a plain HTTP error.
            job_id, events = self.jobs.start(spec, job, gone, fmt.names)
            reply = Reply(fmt.prefix, job_id, data["model"])
            return self._stream(fmt, reply, data, prepared.choices, events)
        collected = self.jobs.collect(spec, job, gone, fmt.names)
        reply = Reply(fmt.prefix, collected[0]["job"], data["model"])
        builder = ResultBuilder()
        for event in collected:
            builder.add(event)
        result = finished(builder)
        self.limits.record_usage(result["usage"])
        return render(fmt, reply, data, prepared.choices, result)

    def prepare(
        self, fmt: Format, body: Any, live: bool = True, options: JobOptions | None = None
    ) -> Prepared:
        """A request body checked and turned into its job, with ``options`` besides its own (a
        batch line's); :class:`APIError` for anything wrong. ``live``: the model must have a
        live worker now (a batch line may wait for one)."""
        data = load_request(fmt.schema, body)
        prompts = fmt.prompts(data)
        count = len(prompts) if prompts is not None else 1
        self.caps.check_choices(count, data["n"])
        limit = self.caps.check_token_ids(prompts or [], "prompt")
        spec = self.jobs.resolve(data["model"], CHAT, live)
        own: JobOptions = {"user": data.get("user"), "max_request_tokens": limit}
        if data.get("service_tier") == "flex":
            own["priority"] = BULK  # in the capacity interactive requests leave, as batch lines
        own.update(options or {})
        job = fmt.job(spec, data, fmt.schema.sampling(data), own)
        return Prepared(data, spec, job, count * data["n"])

    def _stream(
        self, fmt: Format, reply: Reply, data: dict[str, Any], choices: int, events: Iterator[Event]
    ) -> Iterator[str]:
        usage_chunks = fmt.schema.include_usage(data)
        try:
            for chunk in fmt.start_chunks(reply, choices):
                yield frame(_with_usage(chunk, usage_chunks))
            for event in events:
                if event["type"] == DONE:
                    self.limits.record_usage(event["usage"])
                    if usage_chunks:  # OpenAI's stream_options.include_usage: one last chunk
                        usage_chunk = reply.chunk(fmt.chunk_object, None)
                        yield frame(usage_chunk | {"usage": event["usage"]})
                    break
                if event["type"] == TOKEN:
                    for chunk in fmt.event_chunks(reply, data, event):
                        yield frame(_with_usage(chunk, usage_chunks))
        except APIError as exc:
            yield frame(exc.body)
        yield DONE_FRAME


def _with_usage(chunk: Chunk, include: bool) -> Chunk:
    return {**chunk, "usage": None} if include else chunk


def finished(builder: ResultBuilder) -> JobResult:
    """The result a builder was fed a terminal event for (events that :meth:`JobService.collect`
    returned end in one: an error event is raised, never returned)."""
    if builder.result is None:
        raise APIError(502, "The model worker's events ended without a result.")
    return builder.result


def render(fmt: Format, reply: Reply, data: dict[str, Any], count: int, result: JobResult) -> Chunk:
    """The endpoint's response body for a job's result (also a batch line's)."""
    choices = [empty_choice(i) for i in range(count)]
    for choice in result["choices"]:
        choices[choice["index"]] = choice
    return fmt.response(reply, data, choices, result["usage"])


def empty_choice(index: int) -> ChoiceResult:
    """A choice no event spoke of."""
    return {
        "index": index,
        "text": "",
        "reasoning": "",
        "tool_calls": [],
        "finish_reason": None,
        "logprobs": [],
        "echo": None,
    }


def chat_logprobs(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Engine logprob entries (:class:`config.events.TokenLogprob`) in the chat API's shape."""

    def one(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "token": entry["token"],
            "logprob": entry["logprob"],
            # The worker's raw bytes: a token holding part of a character decodes to U+FFFD.
            "bytes": entry["bytes"],
        }

    return {"content": [{**one(e), "top_logprobs": [one(t) for t in e["top"]]} for e in entries]}


def completion_logprobs(entries: Sequence[Mapping[str, Any]], offset: int) -> dict[str, Any]:
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
