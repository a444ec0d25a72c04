"""What a job's events add to /metrics, and the engine gauges read from heartbeats."""

from types import SimpleNamespace

import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.liveness import Liveness
from app.metrics import Metrics
from app.model_status import ModelStatus
from config.events import EventSequence
from config.protocol import encode


def samples(metrics):
    text = generate_latest(metrics.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class Client:
    """Heartbeats and queue lengths, as the collector reads them from Redis."""

    def __init__(self, statuses, depth):
        self.statuses, self.depth = statuses, depth

    def smembers(self, key):
        return {s["id"] for s in self.statuses}

    def mget(self, keys):
        by_key = {f"llm:worker:{s['id']}": encode(s) for s in self.statuses}
        return [by_key.get(k) for k in keys]

    def pipeline(self, transaction=False):
        # Per model (m, then z): its Celery queue's length, then its flex list's.
        return SimpleNamespace(llen=lambda name: None, execute=lambda: [self.depth, 0, 0, 0])


def make(statuses=(), depth=0, batches=None):
    client = Client(list(statuses), depth)
    status = ModelStatus(client, Liveness(client), ["m", "z"])
    counts = batches or {"statuses": {}, "lines": {"completed": 0, "failed": 0, "total": 0}}
    return Metrics(lambda: 0, status.rows, lambda: counts)


def test_a_job_s_events_count_tokens_finishes_and_times():
    metrics = make()
    watch = metrics.watch("m")
    seq = EventSequence("j")
    watch.event(seq.token({"index": 0, "text": "a", "token_ids": [1], "finish_reason": None}))
    watch.event(
        seq.token({"index": 0, "text": "bc", "token_ids": [2, 3], "finish_reason": "length"})
    )
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    watch.event(seq.done(usage, timing={"engine": 0.0}))
    found = samples(metrics)
    m = (("model", "m"),)
    assert found[("llm_prompt_tokens_total", m)] == 5
    assert found[("llm_generation_tokens_total", m)] == 3
    assert (
        found[("llm_request_success_total", (("finished_reason", "length"), ("model", "m")))] == 1
    )
    assert found[("llm_time_to_first_token_seconds_count", m)] == 1
    assert found[("llm_inter_token_latency_seconds_count", m)] == 2  # two tokens after the first
    assert found[("llm_e2e_request_latency_seconds_count", m)] == 1
    assert found[("llm_request_queue_time_seconds_count", m)] == 1
    watch.failed("worker_lost")
    assert (
        samples(metrics)[("llm_request_failure_total", (("code", "worker_lost"), ("model", "m")))]
        == 1
    )


def test_engine_load_comes_from_live_heartbeats():
    live = {"id": "w1", "models": ["m"], "load": {"m": {"running": 3, "waiting": 2}}}
    other = {"id": "w2", "models": ["m"], "load": {"m": {"running": 1, "waiting": 0}}}
    stuck = {"id": "w3", "models": ["m"], "stalled": ["m"], "load": {"m": {"running": 9}}}
    found = samples(make([live, other, stuck], depth=4))
    m = (("model", "m"),)
    assert found[("llm_num_requests_running", m)] == 4  # the stalled worker's rows are not
    assert found[("llm_num_requests_waiting", m)] == 2
    assert found[("llm_live_workers", m)] == 2 and found[("llm_stalled_workers", m)] == 1
    assert found[("llm_queue_depth", m)] == 4
    assert found[("llm_num_requests_running", (("model", "z"),))] == 0


def test_open_streams_and_batches_are_read_when_scraped():
    counts = {
        "statuses": {"completed": 2, "in_progress": 1},
        "lines": {"completed": 5, "failed": 1, "total": 9},
    }
    found = samples(Metrics(lambda: 3, lambda: [], lambda: counts))
    assert found[("llm_open_streams", ())] == 3
    assert found[("llm_batches", (("status", "completed"),))] == 2
    assert found[("llm_batches", (("status", "in_progress"),))] == 1
    assert found[("llm_batch_lines", (("state", "total"),))] == 9


def test_a_scrape_while_redis_is_down_still_shows_the_counters():
    def down():
        raise redis.ConnectionError("down")

    found = samples(Metrics(lambda: 0, down, down))
    assert found[("llm_open_streams", ())] == 0
    assert not [name for name, _ in found if name.startswith(("llm_batch", "llm_queue_depth"))]
