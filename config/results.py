"""A job's result assembled from its events: what a non-streamed answer, a background run and a
batch line record. Both sides use it (the front for answers it waits for, the workers for runs
nobody waits for), so the shape lives once; it imports neither Flask nor torch."""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from config.protocol import DONE, ERROR, TOKEN


class CallResult(TypedDict):
    id: str
    name: str
    arguments: str


class ChoiceResult(TypedDict):
    index: int
    text: str
    tool_calls: list[CallResult]
    finish_reason: str | None
    logprobs: list[dict[str, Any]]  # the engine's entries, when the job asked for them
    echo: dict[str, Any] | None  # the prompt (completions with echo)


class JobResult(TypedDict):
    """``completed`` (``choices``, ``usage``), ``failed`` (``error``: the worker's domain error,
    ``code``/``message``/``param``) or ``cancelled``."""

    status: Literal["completed", "failed", "cancelled"]
    choices: list[ChoiceResult]
    usage: dict[str, int]
    data: list[str]  # an embedding job's vectors (base64)
    error: dict[str, Any] | None
    finished_at: float


class ResultBuilder:
    """Feed it a job's events in order; :attr:`result` is set by the terminal one."""

    def __init__(self) -> None:
        self.choices: dict[int, ChoiceResult] = {}
        self.result: JobResult | None = None

    def add(self, event: dict[str, Any]) -> JobResult | None:
        if event["type"] == TOKEN:
            choice = self.choices.setdefault(
                event["index"],
                {
                    "index": event["index"],
                    "text": "",
                    "tool_calls": [],
                    "finish_reason": None,
                    "logprobs": [],
                    "echo": None,
                },
            )
            if "echo" in event:
                choice["echo"] = event["echo"]
            choice["text"] += event.get("text", "")
            choice["logprobs"].extend(event.get("logprobs") or [])
            for delta in event.get("tool_calls") or []:
                if delta["index"] == len(choice["tool_calls"]):
                    choice["tool_calls"].append(
                        {"id": delta["id"], "name": delta["name"], "arguments": ""}
                    )
                choice["tool_calls"][delta["index"]]["arguments"] += delta.get("arguments", "")
            choice["finish_reason"] = event.get("finish_reason") or choice["finish_reason"]
        elif event["type"] == DONE:
            self.result = self._result("completed", event.get("usage") or {})
            self.result["data"] = event.get("data") or []
        elif event["type"] == ERROR:
            cancelled = event.get("code") == "cancelled"
            error = {k: event.get(k) for k in ("code", "message", "param")}
            self.result = self._result("cancelled" if cancelled else "failed", {}, error)
        return self.result

    def _result(self, status: str, usage: dict, error: dict | None = None) -> JobResult:
        return {
            "status": status,
            "choices": [self.choices[i] for i in sorted(self.choices)],
            "usage": usage,
            "data": [],
            "error": error,
            "finished_at": time.time(),
        }
