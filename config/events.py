"""The events of a job, as its worker publishes them and its front reads them: any number of
:class:`TokenEvent`, then exactly one terminal :class:`DoneEvent` or :class:`ErrorEvent`, each
numbered by the job's :class:`EventSequence` and checked in order by an :class:`EventOrder`.

Part of the message contract (:mod:`config.protocol`: the jobs, the constants, the JSON).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast

from config.protocol import DONE, ERROR, TOKEN, FinishReason, MalformedMessage, decode


class ToolCallDelta(TypedDict):
    """Part of a tool call: its first delta has ``id`` and ``name``; later ones only add
    ``arguments`` (fragments that join into the call's JSON arguments)."""

    index: int
    id: NotRequired[str]
    name: NotRequired[str]
    arguments: str


class TokenInfo(TypedDict):
    """A token as logprobs show it: its id, its text and its raw bytes."""

    id: int
    token: str
    bytes: list[int]


class TopLogprob(TokenInfo):
    logprob: float


class TokenLogprob(TokenInfo):
    """One token of a reply (or of an echoed prompt) with its logprob (None for a prompt's first
    token) and its ``top`` alternatives."""

    logprob: float | None
    top: list[TopLogprob]


class Echo(TypedDict):
    """The prompt, sent with a choice's first event when the job asked for ``echo``."""

    text: str
    logprobs: NotRequired[list[TokenLogprob]]


class TokenFields(TypedDict):
    """What a :class:`TokenEvent` carries beside its envelope."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None
    logprobs: NotRequired[list[TokenLogprob]]
    echo: NotRequired[Echo]
    tool_calls: NotRequired[list[ToolCallDelta]]
    reasoning: NotRequired[str]


class TokenEvent(TokenFields):
    """New text of one choice: ``text`` (delta, the answer's content only), ``reasoning`` (delta
    of a reasoning model's thinking, never in ``text``), its ``token_ids``,
    ``finish_reason`` on the choice's last event (``tool_calls`` when the reply ends in calls);
    ``logprobs`` when asked; ``echo`` (the prompt) on its first; ``tool_calls`` deltas."""

    job: str
    seq: int
    type: Literal["token"]


class PromptDetails(TypedDict):
    cached_tokens: int  # prompt tokens read from the prefix cache


class CompletionDetails(TypedDict):
    reasoning_tokens: int  # tokens of the reply spent thinking (a reasoning model's)


class Usage(TypedDict):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: NotRequired[int]  # generation only
    prompt_tokens_details: NotRequired[PromptDetails]  # generation only
    completion_tokens_details: NotRequired[CompletionDetails]  # generation only


class Timing(TypedDict):
    """Seconds the job spent in its engine, from its first prefill (or embedding pass) to its end:
    the front subtracts it from the request's duration to learn its time in the queue."""

    engine: float


class Tokenized(TypedDict):
    """A tokenize or detokenize job's answer: the token ids, the model's context length, and
    each token's text (when asked) or the whole text (detokenize)."""

    tokens: list[int]
    max_model_len: int
    token_strs: NotRequired[list[str]]
    text: NotRequired[str]


class DoneEvent(TypedDict):
    """The job ended well: ``usage``, and ``data`` (base64 vectors) for an embedding job,
    ``scores`` (one per pair) for a score job, ``tokenized`` for a (de)tokenize job."""

    job: str
    seq: int
    type: Literal["done"]
    usage: Usage
    timing: NotRequired[Timing]
    data: NotRequired[list[str]]
    scores: NotRequired[list[float]]
    tokenized: NotRequired[Tokenized]


class ErrorEvent(TypedDict):
    """The job failed: a domain error code (:data:`ERROR_CODES`), a message for the client, the
    ``field`` of the job at fault (a path: ``messages``, ``prompts``, ``params.max_tokens``; None
    when the worker itself failed) and ``details`` (numbers the message states, by name).

    A message may name the field as ``{param}``: the front writes the endpoint's name for it
    there (``messages`` for chat, ``input`` for responses)."""

    job: str
    seq: int
    type: Literal["error"]
    code: str
    message: str
    field: str | None
    details: dict[str, Any]


Event = TokenEvent | DoneEvent | ErrorEvent


class EventSequence:
    """Numbers the events of one job on the publishing side."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._next = 0

    def _seq(self) -> int:
        self._next += 1
        return self._next - 1

    def token(self, fields: TokenFields) -> TokenEvent:
        return {"job": self.job_id, "seq": self._seq(), "type": TOKEN, **fields}

    def done(
        self,
        usage: Usage,
        timing: Timing | None = None,
        data: list[str] | None = None,
        scores: list[float] | None = None,
        tokenized: Tokenized | None = None,
    ) -> DoneEvent:
        """The job's terminal :class:`DoneEvent`."""
        event: DoneEvent = {"job": self.job_id, "seq": self._seq(), "type": DONE, "usage": usage}
        if timing is not None:
            event["timing"] = timing
        if data is not None:
            event["data"] = data
        if scores is not None:
            event["scores"] = scores
        if tokenized is not None:
            event["tokenized"] = tokenized
        return event

    def error(
        self,
        code: str,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ErrorEvent:
        """The job's terminal :class:`ErrorEvent`."""
        return {
            "job": self.job_id,
            "seq": self._seq(),
            "type": ERROR,
            "code": code,
            "message": message,
            "field": field,
            "details": details or {},
        }


def event_from_wire(raw: str | bytes) -> Event:
    """An event as pub/sub delivers it; :class:`MalformedMessage` if it is not one."""
    message = decode(raw)
    if message.get("type") not in (TOKEN, DONE, ERROR) or not isinstance(message.get("job"), str):
        raise MalformedMessage(f"not an event: {message!r:.200}")
    return cast(Event, message)


class EventGap(Exception):
    """Events of a job were lost between the worker and the front."""


class EventOrder:
    """Checks sequence numbers on the receiving side: drops duplicates, raises on a gap.

    An ``error`` event is accepted even after a gap: it ends the job anyway, and the events it
    follows may never have been published (an engine step that failed half-way through).
    """

    def __init__(self) -> None:
        self._expected = 0

    def accept(self, event: Event) -> bool:
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
