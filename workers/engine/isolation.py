"""Keeping one bad request from failing the others it shares a forward pass with."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_isolated(
    items: list[Item], run: Callable[[list[Item]], Result]
) -> list[tuple[list[Item], Result | None, Exception | None]]:
    """``run`` all ``items`` together; if that raises, ``run`` each item alone, so that only an
    item that fails on its own fails. Returns ``(items run, result, error)`` for each run that
    counts. A failure is rare: running alone costs more, but only then."""
    try:
        return [(items, run(items), None)]
    except Exception as exc:  # noqa: BLE001 - which item is at fault is found below
        if len(items) == 1:
            return [(items, None, exc)]
    outcomes: list[tuple[list[Item], Result | None, Exception | None]] = []
    for item in items:
        try:
            outcomes.append(([item], run([item]), None))
        except Exception as exc:  # noqa: BLE001
            outcomes.append(([item], None, exc))
    return outcomes
