"""Rate limits per API key, kept in Redis so that every front process shares them.

Requests and tokens are counted per key in one-minute windows. A request over either limit gets
429, and every response of a limited key carries OpenAI's headers:
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``. Tokens are counted when a job ends
(its usage), so a request that would cross the token limit still runs; the next one waits.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import redis
from flask import Response, g, request

from app.errors import APIError
from app.jobs import queue_unavailable
from config.events import Usage

WINDOW = 60


class RateLimiter:
    """Requests and tokens per key and minute (``limits``: key, or "*", -> ``rpm``, ``tpm``)."""

    def __init__(self, client: redis.Redis, limits: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.limits = limits

    def limits_for(self, key: str) -> dict[str, Any] | None:
        return self.limits.get(key) or self.limits.get("*")

    def enforce(self) -> None:
        """``before_request`` of the API blueprint, after authentication: count the request
        (or refuse it) and keep its headers for :func:`add_rate_limit_headers`."""
        g.rate_limit_headers = self.check(request_key())

    def record_usage(self, usage: Usage | dict[str, int] | None) -> None:
        """Count a finished job's tokens against the current request's key."""
        if usage:
            self.add_tokens(request_key(), usage.get("total_tokens", 0))

    def check(self, key: str) -> dict[str, str]:
        """Count one request for ``key``; return its rate-limit headers or raise a 429."""
        limit = self.limits_for(key)
        if not limit:
            return {}
        window = int(time.time() // WINDOW)
        names = _names(key, window)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(names["requests"])
            pipe.expire(names["requests"], WINDOW + 1)
            pipe.get(names["tokens"])
            requests, _, tokens = pipe.execute()
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        reset = f"{WINDOW - int(time.time()) % WINDOW}s"
        rpm, tpm = limit.get("rpm"), limit.get("tpm")
        tokens = int(tokens or 0)
        headers: dict[str, str] = {}
        if rpm is not None:
            headers |= {
                "x-ratelimit-limit-requests": str(rpm),
                "x-ratelimit-remaining-requests": str(max(rpm - requests, 0)),
                "x-ratelimit-reset-requests": reset,
            }
        if tpm is not None:
            headers |= {
                "x-ratelimit-limit-tokens": str(tpm),
                "x-ratelimit-remaining-tokens": str(max(tpm - tokens, 0)),
                "x-ratelimit-reset-tokens": reset,
            }
        over = "requests" if rpm is not None and requests > rpm else None
        over = over or ("tokens" if tpm is not None and tokens >= tpm else None)
        if over:
            limit_value = rpm if over == "requests" else tpm
            raise APIError(
                429,
                f"Rate limit reached: {limit_value} {over} per minute for this API key. "
                f"Try again in {reset}.",
                code="rate_limit_exceeded",
                headers={**headers, "Retry-After": reset.rstrip("s")},
            )
        return headers

    def add_tokens(self, key: str, tokens: int) -> None:
        limit = self.limits_for(key)
        if not limit or limit.get("tpm") is None or not tokens:
            return
        self.add_digest_tokens(key_digest(key), tokens)

    def add_digest_tokens(self, digest: str, tokens: int) -> None:
        """Count tokens for the key of ``digest`` (work done later, for a key no longer at
        hand: a batch's lines)."""
        if not tokens or not digest:
            return
        name = _names_of(digest, int(time.time() // WINDOW))["tokens"]
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incrby(name, tokens)
            pipe.expire(name, WINDOW + 1)
            pipe.execute()
        except redis.RedisError:
            pass  # the tokens of one request are not worth failing a finished answer


def key_digest(key: str) -> str:
    """What Redis holds of a key for its rate limits (nothing of it reaches a log)."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _names(key: str, window: int) -> dict[str, str]:
    return _names_of(key_digest(key), window)


def _names_of(digest: str, window: int) -> dict[str, str]:
    return {kind: f"llm:ratelimit:{digest}:{kind}:{window}" for kind in ("requests", "tokens")}


def request_key() -> str:
    """The bearer key of the current request ('' without one)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def add_rate_limit_headers(response: Response) -> Response:
    """``after_request``: every response of a rate-limited key tells how much is left."""
    for name, value in (getattr(g, "rate_limit_headers", None) or {}).items():
        response.headers.setdefault(name, value)
    return response
