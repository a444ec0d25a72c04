"""Tool calls: the prompt that describes tools to a model, and the parser that turns the model's
tool-call markup into OpenAI's tool-call deltas as the text streams.

A model whose chat template renders tools itself gets them through it (``tools=``); a model whose
template knows none (the default SmolLM2) gets the tool format's own prompt: the tools described
in the system message, earlier calls and their results written in the format's markup (Hermes /
Qwen: ``<tool_call>``, ``<tool_response>``).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from config.events import ToolCallDelta
from config.grammars import ToolFormat
from config.protocol import Tool

TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def openai_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """Tools as chat templates (and OpenAI) write them: ``{"type": "function", "function"}``."""
    return [{"type": "function", "function": tool} for tool in tools]


def template_renders_tools(tokenizer: Any) -> bool:
    """Whether the model's own chat template writes the tools it is given."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return "tools" in template


def builtin_messages(
    messages: list[dict[str, Any]], tools: list[Tool] | None, fmt: ToolFormat
) -> list[dict[str, str]]:
    """The conversation as plain messages for a template that knows no tools: the tools in the
    system message, calls and results in the format's markup."""
    out: list[dict[str, str]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = [
                fmt.begin
                + json.dumps({"name": c["name"], "arguments": _arguments(c["arguments"])})
                + fmt.end
                for c in message["tool_calls"]
            ]
            content = "\n".join(([content] if content else []) + calls)
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        if out and role == "user" and out[-1]["role"] == "user" and message["role"] == "tool":
            out[-1]["content"] += "\n" + content  # results of parallel calls: one turn
            continue
        out.append({"role": role, "content": content})
    if tools:
        described = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t) for t in openai_tools(tools)))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{described}"}
        else:
            out.insert(0, {"role": "system", "content": described})
    return out


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation for a template that renders tools: calls as the Hugging Face convention
    writes them (``tool_calls`` of ``{"type": "function", "function": {"name", "arguments"}}``,
    arguments as an object)."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": c.get("id"),
                    "type": "function",
                    "function": {"name": c["name"], "arguments": _arguments(c["arguments"])},
                }
                for c in message["tool_calls"]
            ]
        out.append(message)
    return out


def _arguments(arguments: str | dict[str, Any]) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


class ToolCallParser:
    """Splits a reply's text, as it streams, into content and tool-call deltas.

    The grammar guarantees the markup, so the parser follows it exactly: text up to the opening
    tag is content; then ``{"name": "<name>", "arguments": `` gives the call's first delta (its
    id and name); the arguments stream as fragments; ``}`` and the closing tag end the call. What
    could be the start of a tag is held back until it is known not to be one.
    """

    HEAD = re.compile(r'\{"name": "((?:[^"\\]|\\.)*)", "arguments": ')

    def __init__(self, fmt: ToolFormat) -> None:
        self.fmt = fmt
        self.calls = 0
        self._state = "text"  # text | head | arguments | between
        self._buffer = ""

    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """Add new text; return the content and the tool-call deltas that are final now."""
        self._buffer += text
        content = ""
        deltas: list[ToolCallDelta] = []
        while True:
            if self._state == "text":
                at = self._buffer.find(self.fmt.begin)
                if at < 0:
                    keep = partial_tag(self._buffer, self.fmt.begin)
                    content += self._buffer[: len(self._buffer) - keep]
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    return content, deltas
                content += self._buffer[:at]
                self._buffer, self._state = self._buffer[at + len(self.fmt.begin) :], "head"
            elif self._state == "head":
                match = self.HEAD.match(self._buffer)
                if match is None:
                    return content, deltas
                name = json.loads(f'"{match.group(1)}"')
                deltas.append(
                    {"index": self.calls, "id": _call_id(), "name": name, "arguments": ""}
                )
                self._buffer, self._state = self._buffer[match.end() :], "arguments"
            elif self._state == "arguments":
                at = self._buffer.find(self.fmt.tail)
                end = (
                    at if at >= 0 else len(self._buffer) - partial_tag(self._buffer, self.fmt.tail)
                )
                if end > 0:
                    deltas.append({"index": self.calls, "arguments": self._buffer[:end]})
                if at < 0:
                    self._buffer = self._buffer[end:]
                    return content, deltas
                self.calls += 1
                self._buffer, self._state = self._buffer[at + len(self.fmt.tail) :], "between"
            else:  # between calls: the separator and the next opening tag, or the end
                following = self.fmt.separator + self.fmt.begin
                if self._buffer.startswith(following):
                    self._buffer, self._state = self._buffer[len(following) :], "head"
                elif following.startswith(self._buffer):
                    return content, deltas
                else:  # not another call (the grammar allows none): plain text again
                    self._state = "text"

    def flush(self) -> tuple[str, list[ToolCallDelta]]:
        """At the end of the reply: what is still held back (a reply cut by ``max_tokens``)."""
        rest, self._buffer = self._buffer, ""
        if self._state == "arguments" and rest:
            return "", [{"index": self.calls, "arguments": rest}]
        return (rest if self._state == "text" else ""), []


def partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a start of ``tag``."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
