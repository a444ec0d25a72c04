"""A response's streamed events, in OpenAI's typed sequence, each with its ``sequence_number``:

``response.created``, ``response.in_progress``; for a reasoning model's thinking,
``response.output_item.added``, ``response.content_part.added``,
``response.reasoning_text.delta``..., ``.reasoning_text.done``, ``.content_part.done``,
``.output_item.done``; for the text, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta``..., then ``.output_text.done``,
``.content_part.done``, ``.output_item.done``; for each function call,
``response.output_item.added``, ``response.function_call_arguments.delta``..., ``.done``,
``response.output_item.done``; then ``response.completed`` (or ``.incomplete``, ``.failed``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.responses.items import (
    call_item,
    call_item_id,
    message_id,
    message_item,
    reasoning_id,
    reasoning_item,
    text_part,
)
from config.events import TokenEvent, ToolCallDelta
from config.protocol import encode


@dataclass(frozen=True)
class TextKind:
    """An output item whose one content part streams text (the answer's message, or the
    thinking): the name in its events, its id, item and part, and what more its ``delta`` and
    ``done`` events carry."""

    events: str
    item_id: Callable[[str], str]
    item: Callable[..., dict[str, Any]]  # (response id, text, status)
    part: Callable[[str], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def _thought_part(text: str) -> dict[str, str]:
    return {"type": "reasoning_text", "text": text}


MESSAGE = TextKind("output_text", message_id, message_item, text_part, {"logprobs": []})
THINKING = TextKind("reasoning_text", reasoning_id, reasoning_item, _thought_part)


class ResponseEvents:
    """Writes one response's frames. ``after``: the frames up to this sequence number are
    written as "" (a client that resumes the stream has them)."""

    def __init__(self, response_id: str, after: int = -1) -> None:
        self.response_id = response_id
        self.after = after
        self._seq = 0
        self._outputs = 0  # output items opened so far
        # The text items open now (the thinking, the message): their output index and text.
        self._open: dict[str, tuple[int, str]] = {}  # by TextKind.events
        self._calls: dict[int, dict[str, Any]] = {}  # engine call index -> its item's state

    def frame(self, type_: str, **payload: Any) -> str:
        event = {"type": type_, "sequence_number": self._seq, **payload}
        self._seq += 1
        if event["sequence_number"] <= self.after:
            return ""
        return f"event: {type_}\ndata: {encode(event)}\n\n"

    def opening(self, response: dict[str, Any]) -> list[str]:
        return [
            self.frame("response.created", response=response),
            self.frame("response.in_progress", response=response),
        ]

    def token(self, event: TokenEvent) -> list[str]:
        """The frames of one token event of the job: thinking, text and call deltas."""
        frames = []
        if event.get("reasoning"):
            frames += self._write(THINKING, event["reasoning"])
        if event.get("text") or event.get("tool_calls"):
            frames += self._close(THINKING)  # the answer starts: the thinking is complete
        if event.get("text"):
            frames += self._write(MESSAGE, event["text"])
        for delta in event.get("tool_calls") or []:
            if "name" in delta:  # a new call: what came before it is complete
                frames += self._close(MESSAGE)
                for index, call in sorted(self._calls.items()):
                    if call["open"]:
                        frames += self._close_call(index, call)
                frames += self._open_call(delta)
            call = self._calls[delta["index"]]
            if delta.get("arguments"):
                call["arguments"] += delta["arguments"]
                frames.append(
                    self.frame(
                        "response.function_call_arguments.delta",
                        item_id=call_item_id(self.response_id, delta["index"]),
                        output_index=call["output_index"],
                        delta=delta["arguments"],
                    )
                )
        return frames

    def closing(self, response: dict[str, Any]) -> list[str]:
        """Close what is open, then the final event for the response's status."""
        # Cut by max_output_tokens: the item the reply ended in is incomplete.
        last = self._outputs - 1 if response["status"] == "incomplete" else None
        frames = self._close(THINKING, last) + self._close(MESSAGE, last)
        for index, call in sorted(self._calls.items()):
            if call["open"]:
                frames += self._close_call(index, call, last)
        kind = {"completed": "completed", "incomplete": "incomplete"}.get(response["status"])
        return frames + [self.frame(f"response.{kind or 'failed'}", response=response)]

    def error(self, body: dict[str, Any]) -> list[str]:
        error = body["error"]
        return [
            self.frame(
                "error", code=error.get("code"), message=error["message"], param=error.get("param")
            )
        ]

    def _write(self, kind: TextKind, delta: str) -> list[str]:
        """A text delta of ``kind``'s item, opening the item first if it is not open."""
        frames = []
        if kind.events not in self._open:
            index, self._outputs = self._outputs, self._outputs + 1
            item = kind.item(self.response_id, "", "in_progress")
            frames = [
                self.frame("response.output_item.added", output_index=index, item=item),
                self.frame(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=kind.part(""),
                ),
            ]
            self._open[kind.events] = (index, "")
        index, text = self._open[kind.events]
        self._open[kind.events] = (index, text + delta)
        where = {"item_id": kind.item_id(self.response_id), "output_index": index}
        return frames + [
            self.frame(
                f"response.{kind.events}.delta", **where, content_index=0, delta=delta, **kind.extra
            )
        ]

    def _close(self, kind: TextKind, incomplete_index: int | None = None) -> list[str]:
        """The done events of ``kind``'s item, if it is open (``incomplete`` if it is the one
        ``max_output_tokens`` cut)."""
        if kind.events not in self._open:
            return []
        index, text = self._open.pop(kind.events)
        status = "incomplete" if index == incomplete_index else "completed"
        part = {"item_id": kind.item_id(self.response_id), "output_index": index}
        return [
            self.frame(
                f"response.{kind.events}.done", **part, content_index=0, text=text, **kind.extra
            ),
            self.frame("response.content_part.done", **part, content_index=0, part=kind.part(text)),
            self.frame(
                "response.output_item.done",
                output_index=index,
                item=kind.item(self.response_id, text, status),
            ),
        ]

    def _open_call(self, delta: ToolCallDelta) -> list[str]:
        call = {
            "id": delta["id"],
            "name": delta["name"],
            "arguments": "",
            "output_index": self._outputs,
            "open": True,
        }
        self._calls[delta["index"]] = call
        self._outputs += 1
        item = call_item(self.response_id, delta["index"], call, status="in_progress")
        return [
            self.frame("response.output_item.added", output_index=call["output_index"], item=item)
        ]

    def _close_call(
        self, index: int, call: dict[str, Any], incomplete_index: int | None = None
    ) -> list[str]:
        call["open"] = False
        if call["output_index"] == incomplete_index:
            arguments, status = call["arguments"], "incomplete"
        else:
            arguments, status = call["arguments"] or "{}", "completed"
        item = call_item(self.response_id, index, {**call, "arguments": arguments}, status)
        return [
            self.frame(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=call["output_index"],
                name=call["name"],
                arguments=arguments,
            ),
            self.frame("response.output_item.done", output_index=call["output_index"], item=item),
        ]
