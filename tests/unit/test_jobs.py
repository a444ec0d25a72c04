"""JobService with fakes: how a job's events become a response, an error, a retry or a cancel."""

import queue

import pytest

from app.errors import APIError, from_worker
from app.jobs import JobService
from app.relay import ClientGone, WorkerLost
from config.events import EventSequence
from config.keys import cancel_key, claim_key, heartbeat_key
from config.protocol import WORKER_ERROR


class FakeRedis:
    def __init__(self) -> None:
        self.data = {}

    def get(self, key):
        value = self.data.get(key)
        return value.encode() if isinstance(value, str) else value

    def set(self, key, value, ex=None):
        self.data[key] = value

    def smembers(self, key):
        return set()

    def mget(self, keys):
        return [self.get(k) for k in keys]

    def register_script(self, script):  # the lanes' scripts (config/lanes.py), never run here
        return None


class FakeEvents:
    def __init__(self, events, job_id="j1"):
        self.pending = list(events)
        self.job_id = job_id
        self.job = {"id": job_id, "model": "m"}
        self.claimed_at = None
        self.closed = False

    def next(self, timeout):
        if not self.pending:
            raise queue.Empty
        return self.pending.pop(0)

    def close(self):
        self.closed = True


def service(client=None):
    return JobService(None, client or FakeRedis(), None, {}, timeout=100.0)


def test_events_up_to_done_are_yielded_and_nothing_is_cancelled():
    seq = EventSequence("j1")
    token = {"index": 0, "text": "a", "token_ids": [1], "finish_reason": "stop"}
    usage = {"prompt_tokens": 1, "total_tokens": 2}
    events = FakeEvents([seq.token(token), seq.done(usage)])
    jobs = service()
    assert [e["type"] for e in jobs.relay.iterate(events)] == ["token", "done"]
    assert events.closed and cancel_key("j1") not in jobs.client.data


def test_a_worker_error_becomes_its_http_error_and_an_error_after_a_gap_is_kept():
    seq = EventSequence("j1")
    seq.token({"index": 0, "text": "lost", "token_ids": [1], "finish_reason": None})  # lost
    events = FakeEvents([seq.error("invalid_request", "bad prompt", "prompts[0]")])
    with pytest.raises(APIError) as info:
        list(service().relay.iterate(events))
    assert (info.value.status, info.value.body["error"]["param"]) == (400, "prompt")


def test_a_client_that_left_cancels_its_job():
    events = FakeEvents([])
    jobs = service()
    with pytest.raises(ClientGone) as info:
        list(jobs.relay.iterate(events, gone=lambda: True))
    assert info.value.status == 499
    assert jobs.client.data[cancel_key("j1")] == 1


def test_a_stalled_worker_holding_the_job_is_lost():
    client = FakeRedis()
    client.data[claim_key("j1")] = "w1"
    client.data[heartbeat_key("w1")] = '{"id": "w1", "models": ["m"], "stalled": ["m"]}'
    with pytest.raises(WorkerLost):
        list(service(client).relay.iterate(FakeEvents([])))
    assert client.data[cancel_key("j1")] == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_request", 400),
        ("context_length_exceeded", 400),
        ("max_tokens_per_request", 400),
        ("cancelled", 499),
        ("engine_error", 500),
        (WORKER_ERROR, 500),
        ("worker_shutdown", 503),
        ("something new", 500),
    ],
)
def test_worker_error_codes_map_to_statuses(code, status):
    error = from_worker({"code": code, "message": "m", "param": None})
    assert error.status == status
    assert set(error.body["error"]) == {"message", "type", "param", "code"}
