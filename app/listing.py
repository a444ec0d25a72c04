"""Lists of stored objects (files, batches) as OpenAI pages them: in exact creation order, newest
first unless asked otherwise, a page at a time from an ``after`` cursor.

Each owner's objects are indexed in a Redis sorted set. An object's score is a number that
Redis itself hands out, larger for every object added, whichever front adds it: the creation
time in microseconds, raised past the last score given when two objects meet in the same
microsecond or the fronts' clocks disagree. So objects made in one second list in the order
they were made, and older indexes (scored in whole seconds) still sort before newer objects.
A page is read from the cursor's rank onwards (``ZREVRANK``/``ZRANK``, then a range of the
set), so its cost does not grow with the owner's number of objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from app.errors import APIError

SEQUENCE = "llm:created-seq"  # the last score handed out, shared by every index

# KEYS[1]: the index, KEYS[2]: SEQUENCE; ARGV[1]: the member, ARGV[2]: now in microseconds.
_ADD = """
local score = redis.call('INCR', KEYS[2])
local now = tonumber(ARGV[2])
if score < now then
  redis.call('SET', KEYS[2], ARGV[2])
  score = now
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
return score
"""

Load = Callable[[list[str]], list[dict[str, Any] | None]]


class Index:
    """One owner's objects of one kind, in creation order."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._add = client.register_script(_ADD)

    def add(self, member: str, pipe: Any = None) -> None:
        """Index ``member`` after every object indexed before it (in ``pipe``, if given)."""
        now = str(time.time_ns() // 1000)
        self._add(keys=[self.key, SEQUENCE], args=[member, now], client=pipe or self.client)

    def remove(self, *members: str) -> None:
        if members:
            self.client.zrem(self.key, *members)

    def page(
        self,
        limit: int,
        after: str | None,
        load: Load,
        order: str = "desc",
        wanted: Callable[[dict[str, Any]], bool] = lambda item: True,
    ) -> dict[str, Any]:
        """One page of the list: up to ``limit`` objects after the one whose id is ``after``.

        ``load`` reads the objects of some ids (None for one that has expired: it leaves the
        index); ``wanted`` filters them (a purpose, say)."""
        start = 0
        if after:
            rank = (self.client.zrevrank if order == "desc" else self.client.zrank)(self.key, after)
            if rank is None:
                raise APIError(400, f"No object with id '{after}' is in this list.", "after")
            start = int(rank) + 1  # type: ignore[arg-type]  # an int without WITHSCORE
        read = self.client.zrevrange if order == "desc" else self.client.zrange
        items: list[dict[str, Any]] = []
        while len(items) <= limit:  # one more than the page: whether more follow
            want = limit + 1 - len(items)
            ids = [text(i) for i in read(self.key, start, start + want - 1)]
            if not ids:
                break
            start += len(ids)
            gone = []
            for member, item in zip(ids, load(ids), strict=True):
                if item is None:
                    gone.append(member)
                elif wanted(item):
                    items.append(item)
            self.remove(*gone)
            if gone:  # the set shrank under the cursor: ranks after it moved back
                start -= len(gone)
        data = items[:limit]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(items) > limit,
        }


def text(value: object) -> str:
    """A member as Redis returned it (bytes), as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
