"""The lanes' order (config/lanes.py) on a real Redis: a key alone takes every turn, keys that
wait together share the turns by weight, an idle key banks no credit, and what a job was charged
is settled with what it served."""

import uuid

import pytest

from config.keys import claim_key
from config.lanes import Lanes


@pytest.fixture
def lanes(redis_client):
    return Lanes(redis_client)


@pytest.fixture
def model():
    return f"lanes-{uuid.uuid4().hex[:8]}"  # lanes of their own, whatever else ran


def push(lanes, model, key, count, cost=10, weight=1.0):
    ids = []
    for _ in range(count):
        job = {"id": uuid.uuid4().hex, "model": model, "kind": "completion", "prompts": ["x"]}
        job["share"] = {"key": key, "weight": weight, "cost": cost}
        lanes.push(model, job)
        ids.append(job["id"])
    return ids


def take_all(lanes, model, settle=None):
    """Take jobs until the lanes are empty: whose each was, in order (each settled with
    ``settle`` tokens, or with what it was charged)."""
    keys = []
    while (turn := lanes.take(model, "worker-1")) is not None:
        keys.append(turn.key)
        lanes.settle(model, turn, turn.cost if settle is None else settle)
    return keys


def test_a_key_alone_takes_every_turn_in_the_order_it_sent(lanes, model, redis_client):
    ids = push(lanes, model, "a", 5)
    taken = [lanes.take(model, "worker-1") for _ in range(6)]
    assert taken[-1] is None
    assert [t.key for t in taken[:5]] == ["a"] * 5
    assert [t.raw.split('"id":"')[1][:32] for t in taken[:5]] == ids
    assert redis_client.get(claim_key(ids[0])) == "worker-1"  # claimed as it was taken


def test_a_key_that_comes_later_does_not_wait_behind_another_keys_backlog(lanes, model):
    push(lanes, model, "a", 20)
    early = [lanes.take(model, "w").key for _ in range(4)]  # a's first jobs start
    push(lanes, model, "b", 5)
    order = early + take_all(lanes, model)
    assert order[:4] == ["a"] * 4
    # From b's arrival on, the two alternate until b has nothing left.
    b_turns = [i for i, key in enumerate(order) if key == "b"]
    assert b_turns[-1] <= 4 + 2 * 5, order
    assert order.count("a") == 20


def test_keys_waiting_together_share_the_turns_by_weight(lanes, model):
    push(lanes, model, "heavy", 40, weight=2.0)
    push(lanes, model, "light", 40, weight=1.0)
    first = take_all(lanes, model)[:30]
    assert 19 <= first.count("heavy") <= 21, first


def test_an_idle_key_banks_no_credit(lanes, model):
    push(lanes, model, "a", 10)
    take_all(lanes, model)  # a alone, for a while
    push(lanes, model, "b", 10)
    push(lanes, model, "a", 10)
    order = take_all(lanes, model)
    # b starts where a's last job started, not at zero: it does not take ten turns in a row.
    assert "a" in order[:3], order


def test_a_key_pays_what_its_jobs_served_not_their_estimate(lanes, model):
    push(lanes, model, "a", 10, cost=100)
    push(lanes, model, "b", 10, cost=100)
    order = []
    while (turn := lanes.take(model, "w")) is not None:
        order.append(turn.key)
        lanes.settle(model, turn, 10 if turn.key == "a" else 100)  # a's replies were short
    # a's jobs cost a tenth of b's: a gets most of the turns until its lane is empty.
    assert order[:12].count("a") >= 9, order
    loads = lanes.loads(model)
    assert loads["a"] == {"waiting_requests": 0, "waiting_tokens": 0, "served_tokens": 100}
    assert loads["b"]["served_tokens"] == 1000


def test_waiting_work_is_counted_and_a_job_withdrawn_leaves_its_lane(lanes, model):
    job = {"id": "j1", "model": model, "kind": "completion", "prompts": ["x"]}
    job["share"] = {"key": "a", "weight": 1.0, "cost": 7}
    entry = lanes.push(model, job)
    push(lanes, model, "a", 1, cost=3)
    assert lanes.loads(model)["a"] == {
        "waiting_requests": 2,
        "waiting_tokens": 10,
        "served_tokens": 0,
    }
    assert lanes.withdraw(model, job, entry)
    assert not lanes.withdraw(model, job, entry)  # once
    assert lanes.loads(model)["a"]["waiting_tokens"] == 3
    assert lanes.take(model, "w").cost == 3
    assert lanes.take(model, "w") is None
