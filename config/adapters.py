"""LoRA adapters loaded at run time (``POST /v1/load_lora_adapter``): what is stored of one, the
command the front publishes to the workers of its base model, and each worker's reply.

The stored entries (:data:`config.keys.ADAPTERS`) are the truth: a worker that starts, or that
missed a command while Redis was away, loads and unloads what they say. Part of the message
contract (:mod:`config.protocol`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, TypedDict, cast

from config.protocol import MalformedMessage, decode
from config.registry import ModelSpec

LOAD: Literal["load"] = "load"
UNLOAD: Literal["unload"] = "unload"


class AdapterEntry(TypedDict):
    """An adapter loaded at run time: its public name, its base model's, where it lies (a
    directory PEFT saved, on every worker of the base), when it was loaded, and whether every
    worker of the base holds it (``ready``: until then, requests may not name it)."""

    name: str
    base: str
    source: str
    created: int
    ready: bool


class AdapterCommand(TypedDict):
    """Load or unload one adapter; each worker answers on the ``reply`` channel."""

    op: Literal["load", "unload"]
    entry: AdapterEntry
    reply: str


class AdapterReply(TypedDict):
    """One worker's answer: ``ok``, or the ``error`` that stopped it."""

    worker: str
    ok: bool
    error: str


def adapter_spec(entry: AdapterEntry, base: ModelSpec) -> ModelSpec:
    """The adapter as a registry entry: its base's settings (tool format, reasoning, limits)
    under its own name and source, queued on the base's queue."""
    return replace(
        base,
        name=entry["name"],
        source=entry["source"],
        gguf_file=None,
        base=base.name,
        created=entry["created"],
        aliases=(),
        runtime=True,
    )


def same_adapter(a: AdapterEntry, b: AdapterEntry) -> bool:
    """Whether two entries name the same adapter (whatever their ``ready``)."""
    return all(a.get(k) == b.get(k) for k in ("name", "base", "source", "created"))


def entry_from_wire(raw: str | bytes) -> AdapterEntry:
    return _entry(decode(raw))


def command_from_wire(raw: str | bytes) -> AdapterCommand:
    command = decode(raw)
    if command.get("op") not in (LOAD, UNLOAD) or not isinstance(command.get("reply"), str):
        raise MalformedMessage(f"not an adapter command: {command!r:.200}")
    _entry(command.get("entry"))
    return cast(AdapterCommand, command)


def reply_from_wire(raw: str | bytes) -> AdapterReply:
    reply = decode(raw)
    if not isinstance(reply.get("worker"), str) or not isinstance(reply.get("ok"), bool):
        raise MalformedMessage(f"not an adapter reply: {reply!r:.200}")
    return cast(AdapterReply, reply)


def _entry(entry: object) -> AdapterEntry:
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), str) for k in ("name", "base", "source")
    ):
        raise MalformedMessage(f"not an adapter entry: {entry!r:.200}")
    return cast(AdapterEntry, entry)
