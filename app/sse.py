"""Server-Sent Events framing for streamed completions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Response, stream_with_context

from config.protocol import encode

DONE_FRAME = "data: [DONE]\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell nginx (and friends) not to buffer: each token must reach the client as it comes.
    "X-Accel-Buffering": "no",
}


def frame(payload: dict[str, Any]) -> str:
    """One SSE event: ``data: <json>`` and a blank line."""
    return f"data: {encode(payload)}\n\n"


def sse_response(frames: Iterable[str]) -> Response:
    """Stream ``frames`` as ``text/event-stream``, flushing each one as it is produced."""
    return Response(stream_with_context(frames), mimetype="text/event-stream", headers=SSE_HEADERS)
