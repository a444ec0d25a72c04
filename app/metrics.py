"""Prometheus metrics of a front process, served at ``GET /metrics``.

Counted as requests pass: requests by endpoint and status, request duration (to the last byte
of a stream), time to first token (submit to first event), generated tokens by model. Read at
each scrape: queue depth and live workers per model (from Redis), open streams.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis
from flask import Blueprint, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from app.jobs import JobService

bp = Blueprint("metrics", __name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, jobs: JobService) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llm_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "llm_request_duration_seconds",
            "Request duration, to the last byte of a stream",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "From enqueueing a job to its first event",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "llm_generated_tokens",
            "Generated (completion) tokens",
            ["model"],
            registry=self.registry,
        )
        streams = Gauge(
            "llm_open_streams", "Jobs this front is waiting on or streaming", registry=self.registry
        )
        streams.set_function(lambda: jobs.hub.open_streams)
        self.registry.register(_QueueCollector(jobs))


class _QueueCollector:
    """Queue depth and live workers per model, read from Redis when scraped."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    def collect(self):
        depth = GaugeMetricFamily(
            "llm_queue_depth", "Jobs waiting in a model's queue", labels=["model"]
        )
        live = GaugeMetricFamily(
            "llm_live_workers", "Workers with a live heartbeat", labels=["model"]
        )
        try:
            workers = self.jobs.liveness.workers_by_model(cached=False)
            pipe = self.jobs.client.pipeline(transaction=False)
            names = sorted(self.jobs.registry)
            for name in names:
                pipe.llen(name)
            for name, length in zip(names, pipe.execute(), strict=True):
                depth.add_metric([name], length)
                live.add_metric([name], len(workers.get(name, [])))
        except redis.RedisError:
            pass  # a scrape during an outage shows the counters, without these two
        yield depth
        yield live


def start_timer() -> None:
    g.started = time.perf_counter()


def count_request(response: Response) -> Response:
    """``after_request``: count it; observe its duration once its last byte is sent."""
    metrics: Metrics = current_app.extensions["metrics"]
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.requests.labels(endpoint, str(response.status_code)).inc()
    started = g.get("started")
    if started is not None and endpoint != "/metrics":
        histogram = metrics.duration.labels(endpoint)
        response.call_on_close(lambda: histogram.observe(time.perf_counter() - started))
    return response


@bp.get("/metrics")
def metrics_endpoint():
    from prometheus_client import generate_latest

    return Response(
        generate_latest(current_app.extensions["metrics"].registry), mimetype=CONTENT_TYPE_LATEST
    )
