"""The message contract between the front and the workers: jobs, and the constants of events
and worker status (their shapes: :mod:`config.events`, :mod:`config.status`).

Both sides import this module; it imports neither Flask nor torch. Everything on the wire is JSON,
so the shapes are ``TypedDict``s: mypy checks every place that builds or reads one, and crossing
the wire costs no conversion (token events are the hot path). A message enters typed at one of
three boundaries, each through one function: a job from Celery or a Redis list
(:func:`job_from_wire`), an event from pub/sub (:func:`config.events.event_from_wire`), a
heartbeat (:func:`config.status.status_from_wire`). The Redis names they travel under are in
:mod:`config.keys`.

A job (:class:`Job`) is made by one constructor per kind (:func:`chat_job`,
:func:`completion_job`, :func:`embedding_job`, :func:`score_job`) and enqueued in its key's
lane of its model, with a turn on the model's Celery queue (:mod:`config.lanes`). A job the
front submits again (its worker died) is :func:`next_attempt`: a new id, and the first attempt's
id as ``origin``; at most one attempt of an origin runs to its end.

Events, published for a job, each carry its id and a sequence number ``seq`` starting at 0: any
number of token events, then exactly one terminal event, done or error. Their shapes are in
:mod:`config.events`.

Errors on the wire are domain errors: a ``code`` from :data:`ERROR_CODES`, a message, and the
``field`` of the job at fault (``messages``, ``prompts``, ``params.max_tokens``...). The workers
know nothing of HTTP or of the request's parameter names: the front maps each code to an HTTP
status and each field to the parameter of the endpoint that asked (``app/errors.py``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, NotRequired, TypedDict, Unpack, cast

import orjson

from config.tracing import context_carrier

# -- event types, finish reasons, outcomes ------------------------------------------------------

TOKEN: Literal["token"] = "token"
DONE: Literal["done"] = "done"
ERROR: Literal["error"] = "error"
TERMINAL = frozenset({DONE, ERROR})

# How a choice ended (TokenEvent.finish_reason), as OpenAI names it.
STOP: Literal["stop"] = "stop"  # the model ended it, or a stop sequence did
LENGTH: Literal["length"] = "length"  # max_tokens, or the context, ran out
TOOL_CALLS: Literal["tool_calls"] = "tool_calls"  # the reply ends in tool calls
FinishReason = Literal["stop", "length", "tool_calls"]

# How a worker's run of a job ended (what the Celery task returns): DONE, ERROR, CANCELLED,
# or DUPLICATE (a copy of a job whose request was already answered, dropped).
DUPLICATE: Literal["duplicate"] = "duplicate"

# The one Celery task: a turn on a model's queue (its argument: the model's name). The job it
# runs is chosen when a worker takes the turn, from the model's lanes (config/lanes.py).
TURN_TASK = "llm.turn"

# Domain error codes a worker may send (the front maps each to a status, see app/errors.py).
INVALID_REQUEST = "invalid_request"  # the request's content cannot be run (a bad prompt, ...)
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # prompt (+ max_tokens) over the context
TOO_MANY_TOKENS = "max_tokens_per_request"  # prompt tokens over MAX_REQUEST_TOKENS
CANCELLED: Literal["cancelled"] = "cancelled"  # the front cancelled it (its client went away)
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

# -- jobs ---------------------------------------------------------------------------------------

CHAT: Literal["chat"] = "chat"
COMPLETION: Literal["completion"] = "completion"
EMBEDDING: Literal["embedding"] = "embedding"
SCORE: Literal["score"] = "score"  # a cross-encoder's relevance of text pairs (rerank, score)
# A prompt (or a chat's messages) to token ids, or token ids to text: answered by a worker at
# once, never queued in an engine (see config.keys.quick_queue).
TOKENIZE: Literal["tokenize"] = "tokenize"
DETOKENIZE: Literal["detokenize"] = "detokenize"
QUICK_KINDS = frozenset({TOKENIZE, DETOKENIZE})
JobKind = Literal["chat", "completion", "embedding", "score", "tokenize", "detokenize"]

BULK: Literal["bulk"] = "bulk"  # runs in the capacity interactive work leaves

Message = dict[str, Any]  # an OpenAI chat message, as the request gave it (checked by the front)
Prompt = str | list[int]  # text, or token ids


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
    # A thinking model's reply thinks at most this many tokens; then its end tag is forced (the
    # request's thinking_token_budget, or its reasoning_effort's budget). None: as it likes.
    thinking_token_budget: int | None


class Tool(TypedDict):
    """A function the model may call: its name, what it does, and its arguments' JSON Schema."""

    name: str
    description: NotRequired[str]
    parameters: dict[str, Any]


class Share(TypedDict):
    """Whose job it is, for fair shares (config/lanes.py): the owner hash of its API key ('' with
    keys off), the key's weight, and the tokens the job is estimated to cost."""

    key: str
    weight: float
    cost: int


class JobOptions(TypedDict, total=False):
    """What a job may carry beside its kind's content."""

    user: str | None
    share: Share  # set when it is enqueued interactively (config/lanes.py)
    # The queue (and lanes) it waits in when not its model's own: an adapter loaded at run
    # time waits in its base's (config/adapters.py).
    queue: str
    max_request_tokens: int | None  # prompt tokens the whole job may hold
    # A detached job (a background response, a batch line): nobody waits on its events. The
    # worker records its result (config.results.JobResult) under this key, once, and a lost
    # attempt is run again by the workers themselves (see workers/reaper.py).
    result_key: str
    result_ttl: int  # seconds the result is kept
    # A hash whose field ``completed`` or ``failed`` the worker increments when it records the
    # result (the progress of a batch), in the same step, once.
    progress_key: str
    # Also append its events to a capped Redis Stream (config.keys.events_stream), kept as long
    # as its result: a background response, whose stream a client may read again.
    keep_events: bool
    # BULK: runs in the capacity interactive work leaves (batch lines, the flex tier). A batch
    # line waits in its batch's queue (config.keys.batch_queue), not on Celery.
    priority: Literal["interactive", "bulk"]
    batch: str  # the batch a bulk line belongs to
    # Constrained decoding (chat): the reply's JSON Schema (``{}``: any object), and the tools
    # the model may call, with ``tool_choice`` "none", "auto", "required" or a tool's name.
    json_schema: dict[str, Any] | None
    tools: list[Tool]
    tool_choice: str
    parallel_tool_calls: bool
    trace: dict[str, str]  # the request's trace context, W3C headers (see config/tracing.py)
    # Tokenize: the text's special tokens (a chat's come from its template); a chat without the
    # assistant's turn opened after it; its tokens' text.
    add_special_tokens: bool
    add_generation_prompt: bool
    token_strs: bool
    # Chat: more variables for the model's chat template (vLLM's chat_template_kwargs, such as
    # Qwen3's enable_thinking).
    chat_template_kwargs: dict[str, Any]


class Job(JobOptions):
    """One request's work. By kind: ``messages`` (chat), ``prompts`` (completion: one sequence
    per prompt and per ``n``) or ``inputs`` (embedding: texts or token-id lists)."""

    id: str
    model: str
    kind: JobKind
    created: float  # the front's time.time() when it made the job
    origin: NotRequired[str]  # the first attempt's id, for a retried job
    params: NotRequired[Params]
    messages: NotRequired[list[Message]]
    prompts: NotRequired[list[Prompt]]
    inputs: NotRequired[list[Prompt]]
    pairs: NotRequired[list[list[str]]]  # score: [text_1, text_2] each


def _job(kind: JobKind, model: str, options: JobOptions) -> Job:
    head: dict[str, Any] = {"id": uuid.uuid4().hex, "model": model, "kind": kind}
    head["created"] = time.time()
    trace = context_carrier()  # the request's trace, when tracing is on
    if trace:
        head["trace"] = trace
    return cast(Job, head | options)  # mypy cannot add a TypedDict's keys to another's


def chat_job(
    model: str, messages: list[Message], params: Params, **options: Unpack[JobOptions]
) -> Job:
    """A chat job: one conversation, ``params["n"]`` replies."""
    job = _job(CHAT, model, options)
    job["messages"], job["params"] = messages, params
    return job


def completion_job(
    model: str, prompts: list[Prompt], params: Params, **options: Unpack[JobOptions]
) -> Job:
    """A completion job: ``params["n"]`` continuations of each prompt."""
    job = _job(COMPLETION, model, options)
    job["prompts"], job["params"] = prompts, params
    return job


def embedding_job(model: str, inputs: list[Prompt], **options: Unpack[JobOptions]) -> Job:
    """An embedding job: one vector per input."""
    job = _job(EMBEDDING, model, options)
    job["inputs"] = inputs
    return job


def score_job(model: str, pairs: list[list[str]], **options: Unpack[JobOptions]) -> Job:
    """A score job: one relevance score per pair of texts, by a cross-encoder."""
    job = _job(SCORE, model, options)
    job["pairs"] = pairs
    return job


def tokenize_job(
    model: str,
    prompt: str | None,
    messages: list[Message] | None,
    **options: Unpack[JobOptions],
) -> Job:
    """A tokenize job: a prompt, or a chat's messages through the model's template."""
    job = _job(TOKENIZE, model, options)
    if messages is not None:
        job["messages"] = messages
    else:
        job["prompts"] = [prompt or ""]
    return job


def detokenize_job(model: str, tokens: list[int], **options: Unpack[JobOptions]) -> Job:
    """A detokenize job: token ids to text."""
    job = _job(DETOKENIZE, model, options)
    job["prompts"] = [tokens]
    return job


def origin(job: Job) -> str:
    """The id of the request a job serves: a retried job is a new attempt with its own id."""
    return job.get("origin") or job["id"]


def next_attempt(job: Job) -> Job:
    """The job run again (its worker died): a new id, the same origin."""
    return {**job, "id": uuid.uuid4().hex, "origin": origin(job), "created": time.time()}


class DetachedRecord(TypedDict):
    """A detached job's latest attempt (under ``config.keys.detached_key``), so that the workers
    can run it again when its worker dies."""

    job: Job
    attempts: int


def detached_from_wire(raw: str | bytes) -> DetachedRecord:
    record = decode(raw)
    job_from_wire(record.get("job"))
    if not isinstance(record.get("attempts"), int):
        raise MalformedMessage(f"not a detached job's record: {record!r:.200}")
    return cast(DetachedRecord, record)


class MalformedMessage(ValueError):
    """What came off the wire is not a message of the contract."""


# What each kind runs (a tokenize job: either).
_CONTENT = {
    CHAT: ("messages",),
    COMPLETION: ("prompts",),
    EMBEDDING: ("inputs",),
    SCORE: ("pairs",),
    TOKENIZE: ("messages", "prompts"),
    DETOKENIZE: ("prompts",),
}


def job_from_wire(message: object) -> Job:
    """A job as Celery or a Redis list hands it over (decoded JSON), checked for the fields
    every job has and its kind's content; :class:`MalformedMessage` if it is not one."""
    if not (
        isinstance(message, dict)
        and isinstance(message.get("id"), str)
        and isinstance(message.get("model"), str)
        and message.get("kind") in _CONTENT
        and any(isinstance(message.get(field), list) for field in _CONTENT[message["kind"]])
        and isinstance(message.get("params", {}), dict)
    ):
        raise MalformedMessage(f"not a job: {message!r:.200}")
    return cast(Job, message)


# -- JSON ---------------------------------------------------------------------------------------


def encode(message: object) -> str:
    """Compact JSON, as ``json.dumps(message, separators=(",", ":"))`` writes it, by orjson
    (several times faster, floats most of all); what orjson cannot write (an integer past 64
    bits) by the json module."""
    try:
        return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(message, separators=(",", ":"))


def decode(raw: str | bytes) -> dict[str, Any]:
    """A JSON object; :class:`MalformedMessage` for anything else."""
    message = json.loads(raw)
    if not isinstance(message, dict):
        raise MalformedMessage(f"not a JSON object: {message!r:.200}")
    return message


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
