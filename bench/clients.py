"""N concurrent streaming clients against the HTTP API, timing every SSE chunk.

Plain threads and ``http.client`` keep the client's own cost low: on a 2-core machine the client
shares the CPU with the server it measures.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

from bench.metrics import RequestTiming, summarize
from bench.prompts import messages


def sse_chunks(response) -> Iterator[dict | None]:
    """The JSON chunks of an SSE response, then None for ``[DONE]``; ends without None when the
    stream is cut before it."""
    while line := response.readline():
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            yield None
            return
        yield json.loads(data)


def _one(base: str, body: dict, timing: RequestTiming, api_key: str) -> None:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        if response.status != 200:
            timing.error = f"HTTP {response.status}: {response.read()[:200]!r}"
            return
        finish, usage = None, None
        for chunk in sse_chunks(response):
            if chunk is None:
                break
            if "error" in chunk:
                timing.error = chunk["error"]["message"]
                return
            if chunk.get("usage"):
                usage = chunk["usage"]
            if not chunk["choices"]:
                continue
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                timing.chunk_times.append(time.perf_counter())
            finish = choice.get("finish_reason") or finish  # transformers serve may leave it out
        # Free replies run to max_tokens (ignore_eos); a constrained one may end, complete.
        expected = ("length", "stop") if "response_format" in body else ("length",)
        if finish not in expected:
            timing.error = f"finish_reason {finish!r}, expected {' or '.join(expected)}"
        else:
            timing.tokens = usage["completion_tokens"] if usage else body["max_tokens"]
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        timing.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def call(base: str, method: str, path: str, payload=None, raw: bytes | None = None, headers=None):
    """One plain request; its JSON body (or its raw bytes when it is not JSON)."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    data = raw if raw is not None else (json.dumps(payload).encode() if payload else None)
    conn.request(method, path, data, headers or {"Content-Type": "application/json"})
    response = conn.getresponse()
    content = response.read()
    conn.close()
    return json.loads(content) if content[:1] in (b"{", b"[") else content


def chat_body(model: str, messages: list[dict], max_tokens: int, temperature: float) -> dict:
    """A streaming chat request that generates exactly ``max_tokens`` tokens (``ignore_eos``)."""
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }


def run_bodies(base: str, bodies: list[dict], api_key: str = "EMPTY") -> list[RequestTiming]:
    """``bodies`` sent at once, a thread each; their timings, once every one has ended."""
    timings, threads = [], []
    for body in bodies:
        timing = RequestTiming(start=time.perf_counter())
        timings.append(timing)
        thread = threading.Thread(target=_one, args=(base, body, timing, api_key))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def run(
    base: str,
    model: str,
    concurrency: int,
    max_tokens: int,
    temperature: float,
    api_key: str = "EMPTY",
    extra: dict | None = None,
) -> dict:
    """``concurrency`` streaming chat requests at once; ``extra``: more request fields (a
    ``response_format``, say)."""
    bodies = [
        chat_body(model, messages(i), max_tokens, temperature) | (extra or {})
        for i in range(concurrency)
    ]
    return summarize(run_bodies(base, bodies, api_key), concurrency)
