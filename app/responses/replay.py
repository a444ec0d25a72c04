"""A background response's events read again from their Redis Stream (which the worker appends
to, see ``workers/io.py``), from the first, then followed live until the terminal one: what
``GET /v1/responses/{id}?stream=true`` streams, from any front, whichever front started it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from app.errors import APIError, from_worker
from app.relay import ClientCheck, ClientGone
from config.events import Event, EventGap, EventOrder, event_from_wire
from config.keys import events_stream
from config.protocol import DONE, ERROR

BLOCK_MS = 500  # how long one read waits for new events (the client is checked in between)


def replay(
    client: redis.Redis,
    job_id: str,
    names: dict[str, str],
    idle_timeout: float,
    gone: ClientCheck | None = None,
    moved: Callable[[], bool] | None = None,
) -> Iterator[Event]:
    """The job's events, in order, up to its terminal one (an ``error`` raised as its
    :class:`APIError`, its fields named as ``names`` say). A job silent for ``idle_timeout``
    seconds is a 504; one that ``moved()`` says ended or restarted elsewhere with no more
    events here (checked while it is silent, then once more) is a 409."""
    key, last, order = events_stream(job_id), "0-0", EventOrder()
    heard, moving = time.monotonic(), False
    while True:
        # [[key, [(entry id, {field: value})...]]], or nothing after BLOCK_MS
        reply: Any = client.xread({key: last}, count=256, block=BLOCK_MS)
        if not reply:
            if gone is not None and gone():
                raise ClientGone()
            if moving:  # one more read after it moved found nothing either
                raise APIError(
                    409,
                    "This response's run ended or restarted on another worker without more "
                    "events here: retrieve it, or stream it again.",
                    "stream",
                    "stream_interrupted",
                )
            moving = moved is not None and moved()
            if time.monotonic() - heard > idle_timeout:
                raise APIError(
                    504,
                    f"The response sent no event for {idle_timeout:g} seconds.",
                    code="worker_timeout",
                    type_="timeout_error",
                )
            continue
        heard = time.monotonic()
        entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1]
        for entry_id, fields in entries:
            last = entry_id.decode()
            event = event_from_wire(fields[b"event"])
            try:
                if not order.accept(event):
                    continue  # a duplicate
            except EventGap:  # its first events were dropped (the stream is capped)
                raise APIError(
                    400,
                    "This response's events are no longer all kept; it cannot be streamed again.",
                    "stream",
                    "stream_unavailable",
                ) from None
            if event["type"] == ERROR:
                raise from_worker(event, names)
            yield event
            if event["type"] == DONE:
                return
