"""OpenTelemetry: with the console exporter, one chat request is one trace across processes, from
the front's request span to the worker's job and its engine phases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from openai import OpenAI

from tests.integration.conftest import TRACED

CONSOLE = {"OTEL_TRACES_EXPORTER": "console"}


def spans(log: Path) -> list[dict]:
    """The spans the console exporter printed (indented JSON objects) in a process's output."""
    text, found, decoder = log.read_text(errors="replace"), [], json.JSONDecoder()
    start = text.find('{\n    "name"')
    while start != -1:
        span, end = decoder.raw_decode(text, start)
        found.append(span)
        start = text.find('{\n    "name"', end)
    return found


@pytest.fixture(scope="module")
def traced(stack):
    front = stack.front(**CONSOLE, OTEL_SERVICE_NAME="traced-front")
    worker = stack.worker([TRACED], front, **CONSOLE, OTEL_SERVICE_NAME="traced-worker")
    front_log = stack.workdir / f"front-{front.rsplit(':', 1)[1]}.log"
    return front, front_log, worker.log


def test_one_request_is_one_trace_from_the_front_to_the_engine(traced):
    front, front_log, worker_log = traced
    client = OpenAI(base_url=f"{front}/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model=TRACED, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    job_id = reply.id.removeprefix("chatcmpl-")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        worker = {s["name"]: s for s in spans(worker_log) if jobs_span(s, job_id)}
        requests = [s for s in spans(front_log) if s["name"] == "POST /v1/chat/completions"]
        if requests and {"queue", "job"} <= set(worker) and "decode" in names(worker_log):
            break
        time.sleep(0.2)
    request = requests[-1]
    trace_id = request["context"]["trace_id"]
    assert request["kind"] == "SpanKind.SERVER"
    assert request["resource"]["attributes"]["service.name"] == "traced-front"
    job = worker["job"]
    # The worker's spans hang under the front's request, in its trace.
    assert job["context"]["trace_id"] == worker["queue"]["context"]["trace_id"] == trace_id
    assert job["parent_id"] == worker["queue"]["parent_id"] == request["context"]["span_id"]
    assert job["resource"]["attributes"]["service.name"] == "traced-worker"
    # The engine's phases: children of the job span, in order, no span per token.
    phases = {
        s["name"]: s for s in spans(worker_log) if s.get("parent_id") == job["context"]["span_id"]
    }
    assert {"engine.wait", "prefill", "decode"} <= set(phases)
    assert phases["prefill"]["end_time"] <= phases["decode"]["start_time"]
    assert len([s for s in spans(worker_log) if s["context"]["trace_id"] == trace_id]) < 10


def jobs_span(span: dict, job_id: str) -> bool:
    return span.get("attributes", {}).get("llm.job.id") == job_id


def names(log: Path) -> set[str]:
    return {s["name"] for s in spans(log)}
