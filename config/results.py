"""A job's result assembled from its events: what a non-streamed answer, a background run and a
batch line record. Both sides use it (the front for answers it waits for, the workers for runs
nobody waits for), so the shape lives once; it imports neither Flask nor torch."""

from __future__ import annotations

import time
from typing import Any, Literal, NotRequired, TypedDict

from config.events import Echo, Event, TokenLogprob, Usage
from config.protocol import CANCELLED, DONE, TOKEN, FinishReason


class CallResult(TypedDict):
    id: str
    name: str
    arguments: str


class ChoiceResult(TypedDict):
    index: int
    text: str
    # A reasoning model's thinking ("" for any other; absent from results stored before it).
    reasoning: NotRequired[str]
    tool_calls: list[CallResult]
    finish_reason: FinishReason | None
    logprobs: list[TokenLogprob]  # the engine's entries, when the job asked for them
    echo: Echo | None  # the prompt (completions with echo)


COMPLETED: Literal["completed"] = "completed"
FAILED: Literal["failed"] = "failed"
ResultStatus = Literal["completed", "failed", "cancelled"]


class JobError(TypedDict):
    """A failed job's error, as its :class:`~config.events.ErrorEvent` said it: the front
    names the field as the endpoint that asked does (``app.errors.from_worker``)."""

    code: str
    message: str
    field: str | None
    details: dict[str, Any]


class JobResult(TypedDict):
    """``completed`` (``choices``, ``usage``), ``failed`` (``error``) or ``cancelled``."""

    status: ResultStatus
    choices: list[ChoiceResult]
    usage: Usage | dict[str, int]  # empty unless completed
    data: list[str]  # an embedding job's vectors (base64)
    error: JobError | None
    finished_at: float


def empty_result(status: ResultStatus, error: JobError | None = None) -> JobResult:
    """The result of a job that ended without events (cancelled while queued, or given up)."""
    return {
        "status": status,
        "choices": [],
        "usage": {},
        "data": [],
        "error": error,
        "finished_at": time.time(),
    }


class ResultBuilder:
    """Feed it a job's events in order; :attr:`result` is set by the terminal one."""

    def __init__(self) -> None:
        self.choices: dict[int, ChoiceResult] = {}
        self.result: JobResult | None = None

    def add(self, event: Event) -> JobResult | None:
        if event["type"] == TOKEN:
            choice = self.choices.setdefault(
                event["index"],
                {
                    "index": event["index"],
                    "text": "",
                    "reasoning": "",
                    "tool_calls": [],
                    "finish_reason": None,
                    "logprobs": [],
                    "echo": None,
                },
            )
            if "echo" in event:
                choice["echo"] = event["echo"]
            choice["text"] += event["text"]
            choice["reasoning"] = choice.get("reasoning", "") + event.get("reasoning", "")
            choice["logprobs"].extend(event.get("logprobs") or [])
            for delta in event.get("tool_calls") or []:
                if delta["index"] == len(choice["tool_calls"]):
                    call: CallResult = {
                        "id": delta.get("id", ""),
                        "name": delta.get("name", ""),
                        "arguments": "",
                    }
                    choice["tool_calls"].append(call)
                choice["tool_calls"][delta["index"]]["arguments"] += delta["arguments"]
            choice["finish_reason"] = event["finish_reason"] or choice["finish_reason"]
        elif event["type"] == DONE:
            self.result = self._result(COMPLETED, event["usage"])
            self.result["data"] = event.get("data") or []
        else:
            error: JobError = {
                "code": event["code"],
                "message": event["message"],
                "field": event["field"],
                "details": event["details"],
            }
            status: ResultStatus = CANCELLED if event["code"] == CANCELLED else FAILED
            self.result = self._result(status, {}, error)
        return self.result

    def _result(
        self, status: ResultStatus, usage: Usage | dict[str, int], error: JobError | None = None
    ) -> JobResult:
        result = empty_result(status, error)
        result["choices"] = [self.choices[i] for i in sorted(self.choices)]
        result["usage"] = usage
        return result
