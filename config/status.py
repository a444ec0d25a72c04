"""What a worker's heartbeat says (its status, each engine's load): part of the message contract
of :mod:`config.protocol`, read by the fronts (``app/liveness.py``) and written by the workers
(``workers/heartbeat.py``)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from config.protocol import MalformedMessage, decode


class EngineLoad(TypedDict):
    """How busy one engine is: sequences ``running`` and ``waiting`` (embedding inputs, for an
    embedding engine), and how long the step under way has run."""

    running: int
    waiting: int
    step_seconds: float
    embedding: NotRequired[int]  # embedding jobs a generation engine holds


class WorkerStatus(TypedDict):
    """What a worker's heartbeat says. ``load``: per model, its engine's :class:`EngineLoad` and
    what it runs on (``device``, ``dtype``...). ``stalled``: the models whose engine has not
    finished a step for ENGINE_STALL_TIMEOUT; such a worker is not live, and it exits."""

    id: str
    models: list[str]
    draining: bool
    stalled: list[str]
    load: dict[str, dict[str, Any]]
    ts: float


def status_from_wire(raw: str | bytes) -> WorkerStatus:
    """A heartbeat's value; :class:`MalformedMessage` if it is not one."""
    message = decode(raw)
    if not isinstance(message.get("id"), str) or not isinstance(message.get("models"), list):
        raise MalformedMessage(f"not a worker status: {message!r:.200}")
    return cast(WorkerStatus, message)
