"""The workers' reaper against a real Redis of its own (no worker beside it to race): a detached
job whose worker died runs again as a new attempt, until its last attempt dies too, when its
result is recorded as failed and it is not sent again; bulk work a dead worker held goes back in
line (a batch line to its batch, a flex request to its model's flex list); a job left in its lane
without a turn gets one."""

from __future__ import annotations

import json
import time

import pytest
import redis

from config.keys import (
    DETACHED_SET,
    bulk_processing,
    bulk_queue,
    claim_key,
    detached_key,
    flex_queue,
)
from config.lanes import Lanes, share
from config.protocol import completion_job, encode
from devtools.localstack import EmbeddedRedis
from workers.reaper import MAX_ATTEMPTS, Reaper


@pytest.fixture
def client(tmp_path):
    server = EmbeddedRedis(tmp_path)
    server.start()
    yield redis.Redis.from_url(server.url, decode_responses=True)
    server.stop()


def detached(client, attempts: int) -> dict:
    """A detached job claimed by a worker that is gone (it has no heartbeat)."""
    job = {"id": f"attempt{attempts}", "model": "m", "kind": "chat", "messages": []}
    job["result_key"] = "llm:r:1"
    client.set(detached_key("origin"), encode({"job": job, "attempts": attempts}))
    client.zadd(DETACHED_SET, {"origin": 1})
    client.set(claim_key(job["id"]), "dead-worker:1")
    return job


def test_a_dead_attempt_runs_again_until_the_last_then_fails(client):
    sent = []
    reaper = Reaper(client, sent.append, "reaper:1", interval=0.001)
    detached(client, 1)
    reaper.check()
    assert len(sent) == 1 and sent[0]["origin"] == "origin"
    assert json.loads(client.get(detached_key("origin")))["attempts"] == 2
    assert client.get("llm:r:1") is None  # not ended: it runs again

    detached(client, MAX_ATTEMPTS)  # the last attempt's worker died too
    time.sleep(0.01)  # past the reaper's interval (and its lock's)
    reaper.check()
    assert len(sent) == 1  # not sent again
    result = json.loads(client.get("llm:r:1"))
    assert result["status"] == "failed" and result["error"]["code"] == "worker_error"
    assert f"died {MAX_ATTEMPTS} times" in result["error"]["message"]
    assert client.zscore(DETACHED_SET, "origin") is None  # given up: no longer watched


def test_bulk_work_of_a_dead_worker_goes_back_in_line(client):
    held = bulk_processing("dead-worker:2")
    line = completion_job("m", ["a"], {}, batch="b1", result_key="llm:r:2", priority="bulk")
    flex = completion_job("m", ["b"], {}, priority="bulk")
    client.lpush(held, encode(line), encode(flex))
    Reaper(client, lambda job: None, "reaper:2", interval=0.001).check()
    assert client.llen(held) == 0
    assert json.loads(client.lindex("llm:batch:b1:queue", 0))["id"] == line["id"]
    assert client.lrange(bulk_queue("m"), 0, -1) == ["b1"]
    assert json.loads(client.lindex(flex_queue("m"), 0))["id"] == flex["id"]


def test_jobs_left_in_a_lane_without_their_turns_get_them(client):
    """A front that died between queueing a job and sending its turn (or a turn lost in an
    outage): the reaper sends the turns missing for its models' lanes, and only those."""
    lanes = Lanes(client)
    for key in ("a", "a", "b"):
        job = completion_job("m", ["x"], {})
        job["share"] = share(job, key, 1.0)
        lanes.push("m", job)
    client.rpush("m", "a turn already queued")  # the model's Celery queue
    turns = []
    reaper = Reaper(client, lambda job: None, "reaper:3", 0.001, models=["m"], turn=turns.append)
    reaper.check()
    assert turns == ["m", "m"]
