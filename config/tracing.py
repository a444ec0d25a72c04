"""OpenTelemetry tracing, on when ``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console`` and free
when it is not: no tracer, no instrumentation, no context in the jobs (and none of our imports of
OpenTelemetry runs).

One trace holds a request: the front's request span (Flask's instrumentation), the publication
of its turn (Celery's), then on the worker the job's time in the queue and its run, with the
engine's phases as child spans (waiting for a slot, prefill, decode; never a span per token).
The trace context travels in the job itself (``trace``, W3C ``traceparent``), not in the Celery
message, which is only a turn: each job keeps its own trace, whichever turn runs it, and so do
jobs that never go through Celery (flex requests, batch lines).

Configured only by OpenTelemetry's own variables: ``OTEL_TRACES_EXPORTER``,
``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the rest the OTLP exporter reads).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console")
_started = False


def enabled() -> bool:
    return os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() in EXPORTERS


def setup(service: str) -> bool:
    """Start tracing for this process (once), named ``OTEL_SERVICE_NAME`` or ``service``;
    whether it is on."""
    global _started
    if not enabled():
        return False
    if _started:
        return True
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanProcessor,
    )

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    processor: SpanProcessor
    if os.environ["OTEL_TRACES_EXPORTER"].strip().lower() == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())  # at once: a person reads it
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _started = True
    log.info("tracing on: %s spans of %s", os.environ["OTEL_TRACES_EXPORTER"], name)
    return True


def instrument_flask(app: Any) -> None:
    """Flask's and Celery's (the publishing side's) instrumentations, when tracing is on."""
    if not setup("llm-front"):
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    # The instrumentations' functions are not annotated.
    FlaskInstrumentor().instrument_app(app, excluded_urls="health,metrics")  # type: ignore[no-untyped-call]
    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]


def instrument_worker() -> None:
    """Tracing in a worker, when it is on: its spans come from :func:`job_span`.

    Not Celery's instrumentation: a task is a turn on a model's queue, and the job a turn runs
    is chosen when the worker takes it (config/lanes.py), often another request's than the one
    that sent the turn. The task's span would sit in the wrong trace; the job's spans follow the
    trace the job carries."""
    setup("llm-worker")


def context_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers, for a job to carry (None when off or when
    there is no trace)."""
    if not _started:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


@contextmanager
def job_span(
    job_id: str, model: str, kind: str, carrier: Mapping[str, str] | None, created: float
) -> Iterator[Any]:
    """The worker's span for running one job, a child of the trace the job carries, after a
    ``queue`` span for its time since the front made it. Yields None when tracing is off."""
    if not _started:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    tracer = trace.get_tracer("llm-queue")
    parent = extract(dict(carrier or {}))
    attributes = {"llm.job.id": job_id, "llm.model": model, "llm.job.kind": kind}
    start = int(created * 1e9)
    tracer.start_span("queue", context=parent, start_time=start, attributes=attributes).end()
    with tracer.start_as_current_span("job", context=parent, attributes=attributes) as span:
        yield span


PHASES = (  # the engine's marks (workers.engine.io.Ticket) that start and end each phase
    ("engine.wait", "submitted", "prefill"),
    ("prefill", "prefill", "first_token"),
    ("decode", "first_token", "end"),
)


def engine_spans(span: Any, marks: Mapping[str, int]) -> None:
    """Child spans of ``span`` (a :func:`job_span`) for the engine's phases, from the times
    (ns) the engine marked; a phase with a missing mark is left out."""
    if span is None:
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("llm-queue")
    context = trace.set_span_in_context(span)
    for name, start, end in PHASES:
        if start in marks and end in marks:
            child = tracer.start_span(name, context=context, start_time=marks[start])
            child.end(end_time=marks[end])
