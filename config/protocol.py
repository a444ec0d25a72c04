"""The message contract between the front and the workers: job payloads, events, Redis names.

Both sides import this module; it imports neither Flask nor torch. Everything on the wire is JSON:
the shapes below are ``TypedDict``s, so both sides name the same fields.

A job (:class:`Job`) is enqueued by the front on its model's queue. A job the front submits again
(its worker died) is a new attempt with its own ``id`` and the first attempt's id as ``origin``: at
most one attempt of an origin runs to its end.

Events, published on :func:`events_channel`, each carry the job id and a sequence number ``seq``
starting at 0: any number of :class:`TokenEvent`, then exactly one terminal event,
:class:`DoneEvent` or :class:`ErrorEvent`.

Errors on the wire are domain errors (a ``code`` from :data:`ERROR_CODES`, a message, and the job
field at fault): the workers know nothing of HTTP. The front maps each code to an HTTP status and
an OpenAI error body, in one place (``app/errors.py``).
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

import orjson

TOKEN = "token"
DONE = "done"
ERROR = "error"
TERMINAL = frozenset({DONE, ERROR})

GENERATE_TASK = "llm.generate"
EMBED_TASK = "llm.embed"

WORKERS_SET = "llm:workers"

# Domain error codes a worker may send (the front maps each to a status, see app/errors.py).
INVALID_REQUEST = "invalid_request"  # the request's content cannot be run (a bad prompt, ...)
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # prompt (+ max_tokens) over the context
TOO_MANY_TOKENS = "max_tokens_per_request"  # prompt tokens over MAX_REQUEST_TOKENS
CANCELLED = "cancelled"  # the front cancelled it (its client went away)
ENGINE_ERROR = "engine_error"  # a step of the model's engine failed
WORKER_ERROR = "worker_error"  # the worker failed outside the engine
WORKER_SHUTDOWN = "worker_shutdown"  # the worker stopped before finishing it
ERROR_CODES = frozenset(
    {
        INVALID_REQUEST,
        CONTEXT_LENGTH_EXCEEDED,
        TOO_MANY_TOKENS,
        CANCELLED,
        ENGINE_ERROR,
        WORKER_ERROR,
        WORKER_SHUTDOWN,
    }
)


class Params(TypedDict, total=False):
    """Sampling parameters of a generation job (the engine fills in what is absent)."""

    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    stop: list[str]
    seed: int | None
    ignore_eos: bool
    presence_penalty: float
    frequency_penalty: float
    repetition_penalty: float
    logit_bias: dict[int, float]
    n: int
    logprobs: int | None
    echo: bool


class Tool(TypedDict):
    """A function the model may call: its name, what it does, and its arguments' JSON Schema."""

    name: str
    description: NotRequired[str]
    parameters: dict[str, Any]


class Job(TypedDict):
    """One request's work. By kind: ``messages`` (chat), ``prompts`` (completion: one sequence
    per prompt and per ``n``) or ``inputs`` (embedding: texts or token-id lists)."""

    id: str
    model: str
    kind: Literal["chat", "completion", "embedding"]
    created: float  # the front's time.time() when it enqueued the job
    origin: NotRequired[str]  # the first attempt's id, for a retried job
    user: NotRequired[str | None]
    params: NotRequired[Params]
    messages: NotRequired[list[dict[str, Any]]]
    prompts: NotRequired[list[str | list[int]]]
    inputs: NotRequired[list[str | list[int]]]
    max_request_tokens: NotRequired[int]  # prompt tokens the whole job may hold
    # Constrained decoding (chat): the reply's JSON Schema (``{}``: any object), and the tools
    # the model may call, with ``tool_choice`` "none", "auto", "required" or a tool's name.
    # A detached job (a background response, a batch line): nobody waits on its events. The
    # worker records its result (config.results.JobResult) under this key, once, and a lost
    # attempt is run again by the workers themselves (see workers/reaper.py).
    result_key: NotRequired[str]
    result_ttl: NotRequired[int]  # seconds the result is kept
    # A hash whose field ``completed`` or ``failed`` the worker increments when it records the
    # result (the progress of a batch), in the same step, once.
    progress_key: NotRequired[str]
    # "bulk": runs in the capacity interactive work leaves (batch lines, the flex tier). A batch
    # line waits in its :func:`batch_queue`, not on Celery.
    priority: NotRequired[Literal["interactive", "bulk"]]
    batch: NotRequired[str]  # the batch a bulk line belongs to
    json_schema: NotRequired[dict[str, Any] | None]
    tools: NotRequired[list[Tool]]
    tool_choice: NotRequired[str]
    parallel_tool_calls: NotRequired[bool]


class ToolCallDelta(TypedDict):
    """Part of a tool call: its first delta has ``id`` and ``name``; later ones only add
    ``arguments`` (fragments that join into the call's JSON arguments)."""

    index: int
    id: NotRequired[str]
    name: NotRequired[str]
    arguments: str


class TokenEvent(TypedDict):
    """New text of one choice: ``text`` (delta, content only), its ``token_ids``,
    ``finish_reason`` on the choice's last event (``tool_calls`` when the reply ends in calls);
    ``logprobs`` when asked; ``echo`` (the prompt) on its first; ``tool_calls`` deltas."""

    job: str
    seq: int
    type: Literal["token"]
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    logprobs: NotRequired[list[dict[str, Any]]]
    echo: NotRequired[dict[str, Any]]
    tool_calls: NotRequired[list[ToolCallDelta]]


class Timing(TypedDict):
    """Seconds the job spent in its engine, from its first prefill (or embedding pass) to its end:
    the front subtracts it from the request's duration to learn its time in the queue."""

    engine: float


class DoneEvent(TypedDict):
    """The job ended well: ``usage``, and ``data`` (base64 vectors) for an embedding job."""

    job: str
    seq: int
    type: Literal["done"]
    # prompt_tokens, completion_tokens, total_tokens; for generation, also prompt_tokens_details
    # ({"cached_tokens": prompt tokens read from the prefix cache}).
    usage: dict[str, Any]
    timing: NotRequired[Timing]
    data: NotRequired[list[str]]


class ErrorEvent(TypedDict):
    """The job failed: a domain error code (:data:`ERROR_CODES`), a message for the client, and
    ``param``, the request parameter at fault (None when the worker itself failed)."""

    job: str
    seq: int
    type: Literal["error"]
    code: str
    message: str
    param: str | None


Event = TokenEvent | DoneEvent | ErrorEvent


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which a job's events are published."""
    return f"llm:events:{job_id}"


def cancel_key(job_id: str) -> str:
    """Key the front sets when the client went away; the engine checks it every step."""
    return f"llm:cancel:{job_id}"


def finished_key(job_id: str) -> str:
    """Key a worker sets once a job has run to the end, so a redelivered copy is dropped."""
    return f"llm:finished:{job_id}"


def claim_key(job_id: str) -> str:
    """Key naming the worker that runs a job, so the front can tell when that worker is gone."""
    return f"llm:claim:{job_id}"


def origin(job: Job | dict[str, Any]) -> str:
    """The id of the request a job serves: a retried job is a new attempt with its own id."""
    return job.get("origin") or job["id"]


DETACHED_SET = "llm:detached"  # sorted set of detached jobs' origins, by time enqueued


def detached_key(origin_id: str) -> str:
    """A detached job's latest attempt, so that it can be run again: ``{"job", "attempts"}``."""
    return f"llm:detached:{origin_id}"


def bulk_queue(model: str) -> str:
    """A Redis list of the batches that have lines waiting for a model; workers go round it,
    taking lines from each batch's :func:`batch_queue` when their engine has room for them."""
    return f"llm:bulk:{model}"


def flex_queue(model: str) -> str:
    """A Redis list of flex-tier requests (``service_tier: flex``) waiting for a model. Workers
    take them as they take batch lines, only into room interactive work leaves: on the model's
    Celery queue they would hold worker slots that interactive requests then wait behind."""
    return f"llm:flex:{model}"


def batch_queue(batch_id: str) -> str:
    """A Redis list of a batch's line jobs not taken yet (a worker LMOVEs one into its
    :func:`bulk_processing` list). Deleting it cancels the lines not started."""
    return f"llm:batch:{batch_id}:queue"


def batch_progress(batch_id: str) -> str:
    """A hash of a batch's line counts: ``taken`` by workers, ``completed``, ``failed``."""
    return f"llm:batch:{batch_id}:progress"


def bulk_processing(worker_id: str) -> str:
    """The bulk jobs a worker has taken and not finished: put back if the worker dies."""
    return f"llm:bulk-processing:{worker_id}"


def heartbeat_key(worker_id: str) -> str:
    """Key (with a TTL) that says a worker is alive; its value is :func:`encode` of its
    :class:`WorkerStatus`."""
    return f"llm:worker:{worker_id}"


class WorkerStatus(TypedDict):
    """What a worker's heartbeat says. ``load``: per model, ``running`` and ``waiting``
    sequences (and ``step_seconds``, how long the step under way has run). ``stalled``: the models
    whose engine has not finished a step for ENGINE_STALL_TIMEOUT; such a worker is not live, and
    it exits."""

    id: str
    models: list[str]
    draining: bool
    stalled: list[str]
    load: dict[str, dict[str, Any]]
    ts: float


def encode(message: Any) -> str:
    """Compact JSON, as ``json.dumps(message, separators=(",", ":"))`` writes it, by orjson
    (several times faster, floats most of all); what orjson cannot write (an integer past 64
    bits) by the json module."""
    try:
        return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(message, separators=(",", ":"))


def decode(raw: str | bytes) -> dict[str, Any]:
    return json.loads(raw)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class EventSequence:
    """Numbers the events of one job on the publishing side."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._next = 0

    def make(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"job": self.job_id, "seq": self._next, "type": type_, **fields}
        self._next += 1
        return event

    def error(self, code: str, message: str, param: str | None = None) -> dict[str, Any]:
        """The job's terminal :class:`ErrorEvent`."""
        return self.make(ERROR, code=code, message=message, param=param)


class EventGap(Exception):
    """Events of a job were lost between the worker and the front."""


class EventOrder:
    """Checks sequence numbers on the receiving side: drops duplicates, raises on a gap.

    An ``error`` event is accepted even after a gap: it ends the job anyway, and the events it
    follows may never have been published (an engine step that failed half-way through).
    """

    def __init__(self) -> None:
        self._expected = 0

    def accept(self, event: dict[str, Any]) -> bool:
        """Return True if ``event`` is the next one, False for a duplicate; raise on a gap."""
        seq = event.get("seq")
        if not isinstance(seq, int):
            raise EventGap(f"event without a sequence number: {event!r}")
        if seq < self._expected:
            return False
        if seq > self._expected and event.get("type") != ERROR:
            raise EventGap(f"expected event {self._expected}, got {seq}")
        self._expected = seq + 1
        return True
