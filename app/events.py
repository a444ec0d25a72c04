"""One Redis pub/sub connection per front process, multiplexed over every open job stream.

A request opens a :class:`JobEvents` (which SUBSCRIBEs and waits for Redis to confirm) before it
enqueues its job, because pub/sub delivers only to subscribers already there. A reader thread
(a greenlet under gevent) dispatches each message to the queue of its job.

The hub's client should be its own, with one connection and no health checks: redis-py's PubSub
opens its connection on the first command and, given a health-check interval, reads PING replies
itself, so concurrent first SUBSCRIBEs could each open a connection (the loser's channels then
go unread) and a health check could take a message from under the reader. Every command the hub
sends goes through one lock for the same reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import redis

from config.events import Event, EventOrder, event_from_wire
from config.keys import events_channel

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0


class JobEvents:
    """The events of one job, in order; duplicates dropped, a gap raised."""

    def __init__(self, hub: EventHub, job_id: str) -> None:
        self.hub = hub
        self.job_id = job_id
        self.channel = events_channel(job_id)
        self.queue: queue.Queue[Event] = queue.Queue()
        self.subscribed = threading.Event()
        self.model = ""  # the job's model (set by JobService.submit)
        self.claimed_at: float | None = None  # when the front first saw a worker holding it
        self._order = EventOrder()

    def next(self, timeout: float) -> Event:
        """The next event; raise ``queue.Empty`` after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if self._order.accept(event):
                return event
            log.warning("job %s: dropped duplicate event %s", self.job_id, event.get("seq"))

    def close(self) -> None:
        self.hub.close(self)


class EventHub:
    def __init__(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub()
        self._streams: dict[str, JobEvents] = {}
        self._lock = threading.Lock()  # guards _streams
        self._commands = threading.Lock()  # one SUBSCRIBE/UNSUBSCRIBE at a time
        self._reader: threading.Thread | None = None

    def open(self, job_id: str) -> JobEvents:
        """Subscribe to a job's events; returns once Redis has confirmed the subscription."""
        stream = JobEvents(self, job_id)
        with self._lock:
            self._streams[stream.channel] = stream
            self._ensure_reader()
        try:
            with self._commands:
                self._pubsub.subscribe(stream.channel)
        except redis.RedisError:
            self.close(stream)
            raise
        if not stream.subscribed.wait(SUBSCRIBE_TIMEOUT):
            self.close(stream)
            raise redis.TimeoutError("Redis did not confirm the event subscription")
        return stream

    def close(self, stream: JobEvents) -> None:
        with self._lock:
            if self._streams.pop(stream.channel, None) is None:
                return
        try:
            with self._commands:
                self._pubsub.unsubscribe(stream.channel)
        except redis.RedisError:
            log.warning("could not unsubscribe from %s", stream.channel)
            # redis-py re-subscribes every channel it still holds when it reconnects: forget
            # this one, or it would be subscribed again, for nobody, once Redis is back.
            for key in list(self._pubsub.channels):
                if (key.decode() if isinstance(key, bytes) else key) == stream.channel:
                    del self._pubsub.channels[key]

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _ensure_reader(self) -> None:
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read, name="event-hub", daemon=True)
            self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                message = self._pubsub.get_message(timeout=1.0)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
                time.sleep(0.5)
                continue
            except Exception:  # noqa: BLE001 - the reader must outlive any one bad message
                log.exception("event reader error")
                time.sleep(0.1)
                continue
            if message is None:
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            stream = self._streams.get(channel)
            if stream is None:
                continue
            if message["type"] == "subscribe":
                stream.subscribed.set()
            elif message["type"] == "message":
                try:
                    stream.queue.put(event_from_wire(message["data"]))
                except ValueError:
                    log.error("undecodable event on %s", channel)
