"""Raw HTTP for the checks the SDK hides (status codes, SSE framing), with the standard library."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def post(base: str, path: str, body: Any, headers: dict | None = None, raw: bytes | None = None):
    """POST and return (status, headers, parsed JSON or text)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}", data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, _parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, _parse(error.read())


def get(base: str, path: str, headers: dict | None = None):
    """GET and return (status, headers, parsed body); status 0 if nothing answers."""
    request = urllib.request.Request(f"{base}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, _parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, _parse(error.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, {}, None


def open_stream(base: str, path: str, body: Any, headers: dict | None = None):
    """Start a streaming POST; returns the open response (read it line by line)."""
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return urllib.request.urlopen(request, timeout=120)


def read_frames(response) -> list[str]:
    """Every SSE frame's data, checking each is one ``data:`` line followed by a blank line."""
    frames = []
    while True:
        line = response.readline().decode()
        if not line:
            return frames
        assert line.startswith("data: ") and line.endswith("\n"), repr(line)
        assert response.readline() == b"\n"
        frames.append(line[len("data: ") : -1])


def _parse(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode()
