"""Prometheus metrics of a front process, served at ``GET /metrics``, named as vLLM names its own
(``vllm:num_requests_running`` is ``llm_num_requests_running`` here).

Counted as requests pass through this front (sum them over fronts): HTTP requests by endpoint and
status and their duration; per model, prompt and generated tokens, finished choices by finish
reason, failed jobs by error code, and histograms of time to first token, inter-token latency,
end-to-end latency and time in the queue. Read from Redis at each scrape, per model: sequences
running and waiting in the engines (from the workers' heartbeats), jobs in the queue, live and
stalled workers; per model and API key (by owner hash), requests and tokens waiting in its lane
and tokens served (config/lanes.py); and this front's open streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypedDict

import redis
from flask import Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from app.model_status import ModelRow
from config.events import Event
from config.lanes import KeyLoad
from config.protocol import DONE, STOP, TOKEN


class BatchCounts(TypedDict):
    """Stored batches by status, and their lines: ``total``, ``completed``, ``failed``."""

    statuses: dict[str, int]
    lines: dict[str, int]


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The front's metrics. It reads, when scraped, what the arguments give: this front's open
    streams, each model's row (:class:`app.model_status.ModelStatus`; raises ``RedisError``),
    and the stored batches' counts (raises ``RedisError``)."""

    def __init__(
        self,
        open_streams: Callable[[], int],
        model_rows: Callable[[], list[ModelRow]],
        batch_counts: Callable[[], BatchCounts],
        key_loads: Callable[[], dict[str, dict[str, KeyLoad]]] = dict,
    ) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "llm_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "llm_request_duration_seconds",
            "HTTP request duration, to the last byte of a stream",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        model = ["model"]
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "From enqueueing a job to its first token",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            "llm_inter_token_latency_seconds",
            "Between consecutive tokens of one choice",
            model,
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            "llm_e2e_request_latency_seconds",
            "From enqueueing a job to its end",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "llm_request_queue_time_seconds",
            "From enqueueing a job to its first engine step (queue, worker pickup, engine wait)",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "llm_prompt_tokens", "Prompt tokens of finished jobs", model, registry=registry
        )
        self.cached_tokens = Counter(
            "llm_prompt_cached_tokens",
            "Prompt tokens of finished jobs read from the prefix cache",
            model,
            registry=registry,
        )
        self.generation_tokens = Counter(
            "llm_generation_tokens", "Generated tokens of finished jobs", model, registry=registry
        )
        self.success = Counter(
            "llm_request_success",
            "Finished choices, by finish reason",
            ["model", "finished_reason"],
            registry=registry,
        )
        self.failure = Counter(
            "llm_request_failure",
            "Jobs that ended with an error, by its code",
            ["model", "code"],
            registry=registry,
        )
        streams = Gauge(
            "llm_open_streams", "Jobs this front is waiting on or streaming", registry=registry
        )
        streams.set_function(open_streams)
        registry.register(_EngineCollector(model_rows))
        registry.register(_BatchCollector(batch_counts))
        registry.register(_KeyCollector(key_loads))

    def watch(self, model: str) -> JobWatch:
        return JobWatch(self, model)

    def count_request(self, response: Response) -> Response:
        """``after_request``: count it; observe its duration once its last byte is sent."""
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        self.requests.labels(endpoint, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None and endpoint != "/metrics":
            histogram = self.duration.labels(endpoint)
            response.call_on_close(lambda: histogram.observe(time.perf_counter() - started))
        return response

    def exposition(self) -> Response:
        """The metrics in Prometheus' text format (``GET /metrics``)."""
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


class JobWatch:
    """Times one job from the front's side as its events arrive."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.submitted = time.monotonic()
        self._last: dict[int, float] = {}  # choice -> when its last token event came
        self._first = True

    def event(self, event: Event) -> None:
        now, m = time.monotonic(), self.metrics
        if event["type"] == TOKEN:
            if self._first:
                m.ttft.labels(self.model).observe(now - self.submitted)
                self._first = False
            index, tokens = event["index"], max(1, len(event.get("token_ids") or ()))
            if index in self._last:
                gap = (now - self._last[index]) / tokens
                for _ in range(tokens):
                    m.itl.labels(self.model).observe(gap)
            self._last[index] = now
            if event.get("finish_reason"):
                m.success.labels(self.model, event["finish_reason"]).inc()
        elif event["type"] == DONE:
            elapsed = now - self.submitted
            m.e2e.labels(self.model).observe(elapsed)
            timing = event.get("timing")
            engine = timing["engine"] if timing else 0.0
            m.queue_time.labels(self.model).observe(max(0.0, elapsed - engine))
            usage = event["usage"]
            m.prompt_tokens.labels(self.model).inc(usage.get("prompt_tokens", 0))
            details = usage.get("prompt_tokens_details")
            m.cached_tokens.labels(self.model).inc(
                details.get("cached_tokens", 0) if details else 0
            )
            m.generation_tokens.labels(self.model).inc(usage.get("completion_tokens", 0))
            if "data" in event:  # an embedding job: one finished request
                m.success.labels(self.model, STOP).inc()

    def failed(self, code: str | None) -> None:
        self.metrics.failure.labels(self.model, code or "unknown").inc()


class _EngineCollector:
    """Per model, read from Redis when scraped: engine load (from the heartbeats), queue depth,
    live and stalled workers."""

    def __init__(self, rows: Callable[[], list[ModelRow]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["model"])

        families = {
            "running": gauge("llm_num_requests_running", "Sequences running in the engines"),
            "waiting": gauge("llm_num_requests_waiting", "Sequences waiting in the engines"),
            "depth": gauge("llm_queue_depth", "Jobs waiting in a model's queue"),
            "live": gauge("llm_live_workers", "Workers with a live heartbeat"),
            "stalled": gauge("llm_stalled_workers", "Workers whose engine stalled"),
        }
        try:
            rows = self.rows()
        except redis.RedisError:
            return  # a scrape during an outage shows the counters, without these
        for row in rows:
            name = [row["model"]]
            families["running"].add_metric(name, row["running"])
            families["waiting"].add_metric(name, row["waiting"])
            families["depth"].add_metric(name, row["queued"])
            families["live"].add_metric(name, row["live_workers"])
            families["stalled"].add_metric(name, row["stalled_workers"])
        yield from families.values()


class _BatchCollector:
    """Batches by status, and their lines, over the batches still stored; read when scraped."""

    def __init__(self, counts: Callable[[], BatchCounts]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        batches = GaugeMetricFamily("llm_batches", "Batches by status", labels=["status"])
        lines = GaugeMetricFamily(
            "llm_batch_lines", "Lines of stored batches: total, completed, failed", labels=["state"]
        )
        try:
            counts = self.counts()
        except redis.RedisError:  # a scrape during an outage shows the counters, without these
            return
        for status, count in sorted(counts["statuses"].items()):
            batches.add_metric([status], count)
        for state, count in counts["lines"].items():
            lines.add_metric([state], count)
        yield batches
        yield lines


class _KeyCollector:
    """Per model and API key (by its owner hash, never the key itself; ``anonymous`` with keys
    off): requests and estimated tokens waiting in its lane, and tokens served; read when
    scraped."""

    def __init__(self, loads: Callable[[], dict[str, dict[str, KeyLoad]]]) -> None:
        self.loads = loads

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model", "key"]
        requests = GaugeMetricFamily(
            "llm_key_waiting_requests", "Requests waiting in a key's lane", labels=labels
        )
        tokens = GaugeMetricFamily(
            "llm_key_waiting_tokens",
            "Tokens (estimated) of the requests waiting in a key's lane",
            labels=labels,
        )
        served = CounterMetricFamily(
            "llm_key_served_tokens", "Tokens served to a key's finished requests", labels=labels
        )
        try:
            loads = self.loads()
        except redis.RedisError:  # a scrape during an outage shows the counters, without these
            return
        for model, keys in sorted(loads.items()):
            for key, load in sorted(keys.items()):
                names = [model, key or "anonymous"]
                requests.add_metric(names, load["waiting_requests"])
                tokens.add_metric(names, load["waiting_tokens"])
                served.add_metric(names, load["served_tokens"])
        yield requests
        yield tokens
        yield served


def start_timer() -> None:
    g.started = time.perf_counter()
