"""Fair shares between API keys: a model's interactive jobs wait in one lane per key, and each
turn a worker takes runs the next job of the key furthest behind its share.

The order is start-time fair queuing, weighted by tokens. Each key has a virtual time: the tokens
its jobs cost, divided by its weight (``KEY_WEIGHTS``). A turn takes the oldest job of the waiting
key whose virtual time is least, and charges that key the job's estimated tokens at once, so that
the turns taken in the same moment spread over the keys. When the job ends, the worker settles
the difference with the tokens it really served (prompt and reply). A key that starts waiting
again starts at the virtual time of the job taken last, never before it: time spent idle is no
credit to crowd the others out with. A key alone takes every turn.

Why lanes and turns: the Celery message on a model's queue is only a turn, one per job enqueued,
and the job it runs is chosen when a worker takes it. On a first-in first-out queue of jobs, one
key's requests would wait behind every request another key had queued before them.

Each step is one Lua script, so fronts and workers anywhere share one order. A lane's entry is
``"<job id> <cost> <weight>\\n<job JSON>"``: the scripts read that header, never the job. Taking
a job also claims it for its worker (:func:`config.keys.claim_key`), in the same step, so a job
is never out of its lane without a worker named for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict, cast

import redis
from redis.commands.core import Script

from config.keys import claim_key, lane, lanes_state, lanes_waiting
from config.protocol import COMPLETION, EMBEDDING, SCORE, Job, Share, encode

DEFAULT_REPLY = 256  # the tokens estimated for a reply without max_tokens
LONGEST_REPLY = 2048  # at most this many per reply: an estimate is settled when the job ends
CLAIM_TTL = 24 * 3600

_PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'waiting:' .. ARGV[1], ARGV[3])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local own = tonumber(redis.call('HGET', KEYS[3], 'vt:' .. ARGV[1]) or '0')
  local now = tonumber(redis.call('HGET', KEYS[3], 'now') or '0')
  redis.call('ZADD', KEYS[2], math.max(own, now), ARGV[1])
end
"""

_WITHDRAW = """
if redis.call('LREM', KEYS[1], 1, ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], 'waiting:' .. ARGV[1], -tonumber(ARGV[3]))
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

_TAKE = """
while true do
  local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #top == 0 then return false end
  local key, start = top[1], tonumber(top[2])
  local lane = ARGV[1] .. key
  local entry = redis.call('RPOP', lane)
  if entry then
    local id, cost, weight = string.match(entry, '^(%S*) (%d+) (%S+)\\n')
    cost, weight = tonumber(cost) or 0, tonumber(weight) or 1
    if weight <= 0 then weight = 1 end
    local after = start + cost / weight
    redis.call('HSET', KEYS[2], 'vt:' .. key, after)
    redis.call('HINCRBY', KEYS[2], 'waiting:' .. key, -cost)
    if start > tonumber(redis.call('HGET', KEYS[2], 'now') or '0') then
      redis.call('HSET', KEYS[2], 'now', start)
    end
    if redis.call('LLEN', lane) == 0 then
      redis.call('ZREM', KEYS[1], key)
    else
      redis.call('ZADD', KEYS[1], after, key)
    end
    if id and id ~= '' then redis.call('SET', ARGV[2] .. id, ARGV[3], 'EX', ARGV[4]) end
    return {key, entry}
  end
  redis.call('ZREM', KEYS[1], key)
end
"""

_SETTLE = """
redis.call('HINCRBYFLOAT', KEYS[2], 'vt:' .. ARGV[1], ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('HINCRBY', KEYS[2], 'served:' .. ARGV[1], ARGV[3])
"""


def estimate(job: Job) -> int:
    """The tokens a job should cost, before it runs: its input's characters over four (token
    ids one each), and its replies' ``max_tokens`` (:data:`DEFAULT_REPLY` without one, at most
    :data:`LONGEST_REPLY`)."""
    content: list[Any] = (
        job.get("messages") or job.get("prompts") or job.get("inputs") or job.get("pairs") or []
    )
    prompt = sum(_tokens(item) for item in content)
    if job["kind"] in (EMBEDDING, SCORE):
        return max(1, prompt)
    params = job.get("params") or {}
    replies = (params.get("n") or 1) * (len(content) if job["kind"] == COMPLETION else 1)
    reply = min(params.get("max_tokens") or DEFAULT_REPLY, LONGEST_REPLY)
    return max(1, prompt + replies * reply)


def _tokens(item: object) -> int:
    """About how many tokens one input is: token ids one each, text a quarter of its JSON."""
    if isinstance(item, list) and all(isinstance(i, int) for i in item):
        return len(item)
    return len(encode(item)) // 4


def share(job: Job, key: str, weight: float) -> Share:
    """The job's share: its key (an owner hash), the key's weight, and its estimated cost."""
    return {"key": key, "weight": weight, "cost": estimate(job)}


@dataclass(frozen=True)
class Turn:
    """A job a worker took from a lane: whose it is, what it was charged, and the job as the
    lane held it (JSON text, for :func:`config.protocol.decode`)."""

    key: str
    cost: int
    weight: float
    raw: str


class KeyLoad(TypedDict):
    """One key's work for one model: requests and estimated tokens waiting in its lane, and
    tokens its finished jobs were served."""

    waiting_requests: int
    waiting_tokens: int
    served_tokens: int


class Lanes:
    """The lanes of every model, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {}

    def _run(self, script: str, keys: list[str], args: list[str | int]) -> Any:
        """Run one of the scripts (by EVALSHA, loading it the first time Redis lacks it)."""
        if script not in self._scripts:
            self._scripts[script] = self.client.register_script(script)
        return self._scripts[script](keys, args)

    def push(self, model: str, job: Job) -> str:
        """Put ``job`` (with its ``share``) last in its key's lane of ``model``; return the
        entry, for :meth:`withdraw`. Raises ``redis.RedisError``."""
        owner = job["share"]
        entry = _entry(job["id"], owner["cost"], owner["weight"], encode(job))
        keys = [lane(model, owner["key"]), lanes_waiting(model), lanes_state(model)]
        self._run(_PUSH, keys, [owner["key"], entry, owner["cost"]])
        return entry

    def withdraw(self, model: str, job: Job, entry: str) -> bool:
        """Take back a job not taken yet (its turn could not be sent); whether it was there."""
        owner = job["share"]
        keys = [lane(model, owner["key"]), lanes_waiting(model), lanes_state(model)]
        return bool(self._run(_WITHDRAW, keys, [owner["key"], entry, owner["cost"]]))

    def take(self, model: str, worker_id: str) -> Turn | None:
        """The next job for ``model`` by fair share, claimed for ``worker_id``; None when no
        lane holds one. Raises ``redis.RedisError``."""
        args: list[str | int] = [lane(model, ""), claim_key(""), worker_id, CLAIM_TTL]
        found = self._run(_TAKE, [lanes_waiting(model), lanes_state(model)], args)
        if not found:
            return None
        key, entry = (part.decode() if isinstance(part, bytes) else part for part in found)
        header, _, raw = entry.partition("\n")
        _, cost, weight = header.split(" ")
        return Turn(key, int(cost), float(weight), raw)

    def settle(self, model: str, turn: Turn, tokens: int) -> None:
        """A taken job has ended having served ``tokens``: its key pays for those, not for the
        estimate it was charged. Raises ``redis.RedisError``."""
        delta = (tokens - turn.cost) / turn.weight
        keys = [lanes_waiting(model), lanes_state(model)]
        self._run(_SETTLE, keys, [turn.key, f"{delta:.6f}", tokens])

    def backlog(self, model: str, key: str) -> tuple[int, int]:
        """The jobs in ``key``'s lane of ``model``, and how many keys have jobs waiting."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(lane(model, key))
        pipe.zcard(lanes_waiting(model))
        mine, keys = pipe.execute()
        return int(mine), int(keys)

    def waiting(self, model: str) -> int:
        """The jobs in all of ``model``'s lanes."""
        return sum(load["waiting_requests"] for load in self.loads(model).values())

    def loads(self, model: str) -> dict[str, KeyLoad]:
        """Each key's waiting and served work for ``model``. Raises ``redis.RedisError``."""
        state = {
            _text(field): int(float(value))
            for field, value in self.client.hgetall(lanes_state(model)).items()
        }
        keys = {f.partition(":")[2] for f in state if f.startswith(("waiting:", "served:"))}
        ordered = sorted(keys)
        pipe = self.client.pipeline(transaction=False)
        for key in ordered:
            pipe.llen(lane(model, key))
        lengths = cast(list[int], pipe.execute())
        return {
            key: {
                "waiting_requests": length,
                "waiting_tokens": max(0, state.get(f"waiting:{key}", 0)),
                "served_tokens": state.get(f"served:{key}", 0),
            }
            for key, length in zip(ordered, lengths, strict=True)
        }


def _entry(job_id: str, cost: int, weight: float, job: str) -> str:
    return f"{job_id} {cost} {weight!r}\n{job}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
