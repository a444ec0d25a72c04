"""Server-Sent Events framing for streamed completions, and the one way a route answers: a JSON
body, or a stream of SSE frames."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, stream_with_context

from config.protocol import encode

DONE_FRAME = "data: [DONE]\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell nginx (and friends) not to buffer: each token must reach the client as it comes.
    "X-Accel-Buffering": "no",
}

Answer = dict[str, Any] | Iterator[str]  # a response body, or the frames of a stream


def frame(payload: dict[str, Any]) -> str:
    """One SSE event: ``data: <json>`` and a blank line."""
    return f"data: {encode(payload)}\n\n"


def sse_response(frames: Iterator[str]) -> Response:
    """Stream ``frames`` as ``text/event-stream``, flushing each one as it is produced."""
    return Response(stream_with_context(frames), mimetype="text/event-stream", headers=SSE_HEADERS)


def respond(answer: Answer) -> Response:
    """The HTTP response for a service's answer: JSON, or a stream of SSE frames."""
    return jsonify(answer) if isinstance(answer, dict) else sse_response(answer)
