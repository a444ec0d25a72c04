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

import ssl
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL = "sentinel://"
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
