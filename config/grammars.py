"""Grammars for constrained decoding, built from a request's ``response_format`` and ``tools``.

llguidance compiles them (see the README for why this library: no dependencies, fast masks,
schemas compiled in milliseconds, lazy triggers for tool calls in free text). This module only
writes grammar text, so the front can check a schema (a 400 before anything is queued) without a
tokenizer or torch, and the worker builds its matchers from the same text.

Tool calls follow the model's tool format (:data:`TOOL_FORMATS`); both the grammar and the
worker's parser rely on its exact markup, which the grammar guarantees:
``<tool_call>\\n{"name": "<name>", "arguments": <JSON object>}\\n</tool_call>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from llguidance import LLMatcher

# JSON as models are taught it (json.dumps' separators), with no room for runs of whitespace,
# which small models fall into when a grammar allows them.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT = {"type": "object"}


@dataclass(frozen=True)
class ToolFormat:
    """How a model writes a tool call: ``begin`` + ``{"name": ..., "arguments": ...}`` + ``end``,
    several calls separated by ``separator``."""

    begin: str
    end: str
    separator: str = "\n"

    def head(self, name: str) -> str:
        """What a call of ``name`` starts with, up to its arguments."""
        return f'{self.begin}{{"name": {json.dumps(name)}, "arguments": '

    @property
    def tail(self) -> str:
        return "}" + self.end


TOOL_FORMATS = {
    # Hermes / Qwen: the most widely used convention, and the built-in one for models whose own
    # chat template knows no tools.
    "hermes": ToolFormat(begin="<tool_call>\n", end="\n</tool_call>"),
}


class GrammarError(ValueError):
    """The request's schema cannot be compiled; ``param`` names where it came from."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def with_options(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-guidance": JSON_OPTIONS}


def json_grammar(schema: dict[str, Any] | None) -> str:
    """The grammar of a JSON value that validates against ``schema`` (None: any object)."""
    return LLMatcher.grammar_from_json_schema(with_options(schema or ANY_OBJECT))


def tool_grammar(
    tools: Sequence[Mapping[str, Any]],
    choice: str,
    parallel: bool,
    fmt: ToolFormat,
    answer: dict[str, Any] | None = None,
) -> str | None:
    """The grammar of a reply under ``tool_choice`` = ``choice``: ``"required"``: only tool calls;
    a tool's name: one call of it; ``"auto"``: free text, or tool calls once the model writes the
    format's opening tag; ``"none"``: no grammar. ``parallel``: several calls, else at most one.
    ``answer``: under ``"auto"``, a reply that is not calls follows this JSON Schema (the request's
    ``response_format``) instead of being free text.
    """
    if choice == "none" or not tools:
        return None
    if choice not in ("auto", "required"):  # a named tool: one call of it, as OpenAI makes
        tools, parallel = [t for t in tools if t["name"] == choice], False
    bodies = []
    for i, tool in enumerate(tools):
        head = fmt.head(tool["name"])[len(fmt.begin) :]
        arguments = json.dumps(with_options(tool.get("parameters") or ANY_OBJECT))
        bodies.append(f"call_{i}: {_text(head)} %json {arguments} {_text(fmt.tail)}")
    more = f" ({_text(fmt.separator + fmt.begin)} call)*" if parallel else ""
    lines = ["%llguidance {}"]
    if choice == "auto" and answer is not None:
        # An answer in the response_format's schema, or calls: the first byte tells which.
        lines += [
            f"start: answer | {_text(fmt.begin)} call{more}",
            f"answer: %json {json.dumps(with_options(answer or ANY_OBJECT))}",
        ]
    elif choice == "auto":
        # Free text to the end, or text up to the opening tag and then calls: the trigger is
        # lazy, so the text matches up to its first occurrence.
        lines += [
            f"start: text | trigger call{more}",
            "text: TEXT",
            "TEXT: /(.|\\n)*/",
            f"trigger[lazy]: TEXT {_text(fmt.begin)}",
        ]
    else:
        lines += [f"start: {_text(fmt.begin)} call{more}"]
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(tools))))
    lines += bodies
    return LLMatcher.grammar_from_lark("\n".join(lines))


def _text(value: str) -> str:
    return json.dumps(value)


@lru_cache(maxsize=1024)
def check(grammar: str) -> str:
    """'' if ``grammar`` compiles, else llguidance's message (cached by grammar text)."""
    return LLMatcher.validate_grammar(grammar)


def request_grammar(
    json_schema: dict[str, Any] | None,
    tools: Sequence[Mapping[str, Any]] | None,
    tool_choice: str,
    parallel: bool,
    fmt: ToolFormat,
) -> str | None:
    """The grammar a request's reply must follow, checked; :class:`GrammarError` if its schema
    does not compile. ``json_schema``: from ``response_format`` (``{}`` asks for any object)."""
    if tools and tool_choice != "none":
        grammar = tool_grammar(tools, tool_choice, parallel, fmt, json_schema)
        param = "tools"
    elif json_schema is not None:
        grammar, param = json_grammar(json_schema), "json_schema"
    else:
        return None
    problem = check(grammar)
    if problem:
        raise GrammarError(f"The schema cannot be used for constrained decoding: {problem}", param)
    return grammar
