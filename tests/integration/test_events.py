"""The front's event hub against a real Redis: many requests subscribing at the same moment (as
when a load of clients arrives at a fresh front) share one connection and all get their events."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from app.events import EventHub
from config.events import EventSequence
from config.keys import events_channel
from config.protocol import encode
from config.redisconn import connect

STREAMS = 64


def test_concurrent_first_subscriptions_share_one_connection(redis_server, redis_client):
    name = f"hub-test-{uuid.uuid4().hex[:8]}"
    hub = EventHub(connect(redis_server.url, blocking=1, timeout=10, client_name=name))
    barrier = threading.Barrier(STREAMS)

    def open_stream(job_id: str):
        barrier.wait()  # every first SUBSCRIBE at once, before the hub has a connection
        return hub.open(job_id)

    with ThreadPoolExecutor(STREAMS) as pool:
        streams = list(pool.map(open_stream, [uuid.uuid4().hex for _ in range(STREAMS)]))
    try:
        connections = [c for c in redis_client.client_list() if c.get("name") == name]
        assert len(connections) == 1, connections
        assert int(connections[0]["sub"]) == STREAMS
        for stream in streams:
            token = {"index": 0, "text": "hi", "token_ids": [1], "finish_reason": None}
            event = EventSequence(stream.job_id).token(token)
            assert redis_client.publish(events_channel(stream.job_id), encode(event)) == 1
        for stream in streams:  # each one's event reached it, through the one reader
            assert stream.next(5)["job"] == stream.job_id
    finally:
        for stream in streams:
            stream.close()
    assert hub.open_streams == 0
