"""Connecting to Redis from ``REDIS_URL``, for the front, the workers and Celery alike.

    redis://[:password@]host:6379/0                 plain
    rediss://[:password@]host:6380/0[?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem]   TLS
    sentinel://[:password@]host1:26379[;sentinel://host2:26379...][/0]   Redis Sentinel

A Sentinel URL lists the sentinels (separated by ``;``, as Celery writes them); the master they
watch is named by ``REDIS_SENTINEL_MASTER`` (default ``mymaster``), and the password, if any, is
the master's. Every client asks the sentinels for the current master, so a failover needs no
restart.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

log = logging.getLogger(__name__)

SENTINEL = "sentinel://"
DURABLE_KEY = "llm:durable"  # the counter Replicas.wait writes to have something to wait for
DEFAULT_MASTER = "mymaster"  # REDIS_SENTINEL_MASTER unset: redis-sentinel's own example name


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL)


class SentinelBlockingConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The master's connections, found through Sentinel, in a pool that makes callers wait for a
    free connection (as :class:`redis.BlockingConnectionPool` does) instead of opening more."""


def connect(
    url: str, master_name: str = DEFAULT_MASTER, blocking: int | None = None, **kwargs: Any
) -> redis.Redis:
    """A client for ``url``; with ``blocking``, its pool holds at most that many connections
    and callers wait for one (``timeout`` seconds, from ``kwargs``) when all are busy."""
    if is_sentinel(url):
        hosts, options = _sentinels(url)
        pool_class = SentinelConnectionPool
        if blocking:
            pool_class = SentinelBlockingConnectionPool
            kwargs["max_connections"] = blocking
        # redis-py leaves Sentinel unannotated.
        sentinel = Sentinel(hosts, socket_timeout=kwargs.get("socket_timeout", 5))  # type: ignore[no-untyped-call]
        client = sentinel.master_for(  # type: ignore[no-untyped-call]
            master_name, connection_pool_class=pool_class, **options, **kwargs
        )
        return cast(redis.Redis, client)
    if blocking:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=blocking, **kwargs)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, **kwargs)


def _sentinels(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The sentinels' addresses, and the master's db and password, from a Sentinel URL."""
    hosts: list[tuple[str, int]] = []
    options: dict[str, Any] = {}
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme != "sentinel":
            raise ValueError(f"not a sentinel:// URL: {part!r}")
        hosts.append((parts.hostname or "localhost", parts.port or 26379))
        if parts.password:
            options["password"] = unquote(parts.password)
        if parts.username:
            options["username"] = unquote(parts.username)
        if parts.path.strip("/"):
            options["db"] = int(parts.path.strip("/"))
    return hosts, options


def celery_broker(url: str, master_name: str = DEFAULT_MASTER) -> dict[str, Any]:
    """Celery's broker settings for ``url`` (kombu reads Sentinel and TLS URLs itself, given
    the master's name and the TLS options)."""
    settings: dict[str, Any] = {"broker_url": url}
    if is_sentinel(url):
        settings["broker_transport_options"] = {"master_name": master_name}
    elif url.startswith("rediss://"):
        query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        # kombu wants the TLS options apart; certificates are checked unless the URL says not.
        wanted = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
        reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}
        options: dict[str, ssl.VerifyMode | str] = {
            "ssl_cert_reqs": reqs.get(wanted, ssl.CERT_REQUIRED)
        }
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if key in query:
                options[key] = query[key]
        settings["broker_use_ssl"] = options
    return settings


class Replicas:
    """Waits, after a write that must outlive a failover, until a replica has it.

    Redis replicates asynchronously: a write the primary acknowledged is lost if the primary dies
    before a replica copied it, and a replica promoted then never had it. ``WAIT 1 <ms>`` blocks
    until one replica acknowledges every write the primary had taken from that connection (its
    offset covers all earlier writes, from any connection), or the time is up. Only where the
    primary has a replica (without one, WAIT would just sleep); the count is read from ``INFO``
    every :attr:`check_every` seconds. A replica too slow is logged, never an error: the write
    is done, on the primary."""

    def __init__(self, client: redis.Redis, wait_ms: int, check_every: float = 10.0) -> None:
        self.client = client
        self.wait_ms = wait_ms
        self.check_every = check_every
        self._count = 0
        self._checked = float("-inf")

    def wait(self) -> None:
        """Wait until a replica has every write made so far, from any connection: one small
        write of its own, then WAIT on its connection (a connection that wrote nothing would
        have nothing to wait for)."""
        if self.wait_ms <= 0 or self.count() == 0:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(DURABLE_KEY)
        pipe.wait(1, self.wait_ms)
        try:
            acknowledged = pipe.execute()[-1]
        except redis.RedisError as exc:  # the write itself is done: say so, and go on
            log.warning("could not wait for a replica: %s", exc)
            return
        if int(acknowledged) < 1:
            log.warning("no replica acknowledged a write within %d ms", self.wait_ms)
            self._checked = float("-inf")  # count them again before the next wait

    def count(self) -> int:
        """The primary's connected replicas, as last read."""
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            self._checked = now
            try:
                info = self.client.info("replication")
                self._count = int(info.get("connected_slaves", 0))
            except redis.RedisError as exc:
                log.warning("could not count the replicas: %s", exc)
        return self._count


def wait_for_replica(replicas: Replicas | None) -> None:
    """:meth:`Replicas.wait`, where the caller has replicas to wait for."""
    if replicas is not None:
        replicas.wait()
