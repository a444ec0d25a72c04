"""The generation engine alone (no Redis, no Celery, no HTTP) under N concurrent requests."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.metrics import RequestTiming, summarize
from bench.prompts import messages


class TimingIO:
    """A JobIO that timestamps each job's token events instead of publishing them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.timings: dict[str, RequestTiming] = {}
        self.ended: set[str] = set()

    def exchange(self, events: list[dict[str, Any]], job_ids: list[str]) -> set[str]:
        now = time.perf_counter()
        with self.lock:
            for event in events:
                timing = self.timings[event["job"]]
                if event["type"] == "token":
                    timing.chunk_times.append(now)
                    timing.chunk_tokens.append(len(event["token_ids"]))
                    timing.tokens += len(event["token_ids"])
                elif event["type"] == "error":
                    timing.error = event["message"]
                if event["type"] != "token":
                    self.ended.add(event["job"])
        return set()


def run(engine: Any, concurrency: int, max_tokens: int, temperature: float) -> dict:
    """Submit ``concurrency`` jobs at once to a started engine; summarize when all are done."""
    io: TimingIO = engine.io
    tickets = []
    for i in range(concurrency):
        job_id = f"bench-{concurrency}-{i}-{time.monotonic_ns()}"
        io.timings[job_id] = RequestTiming(start=time.perf_counter())
        params = {"max_tokens": max_tokens, "temperature": temperature, "ignore_eos": True}
        tickets.append(engine.submit({"id": job_id, "messages": messages(i), "params": params}))
    for ticket in tickets:
        ticket.wait()
    timings = list(io.timings.values())
    assert io.ended >= set(io.timings), "a job finished before its terminal event was sent"
    io.timings.clear()
    io.ended.clear()
    return summarize(timings, concurrency)


def load_default_engine(model: str):
    """Load the registry model as a worker would, with a timing sink, and start its engine."""
    from config.registry import load_registry
    from config.settings import Settings
    from workers.loading import load_engine

    settings = Settings.from_env()
    engine = load_engine(load_registry(settings.models_file)[model], TimingIO(), settings)
    engine.start()
    return engine
