"""Who owns stored objects (responses, files and batches): when API keys are on, the key that
created one, kept as a keyed hash (HMAC-SHA256) so that Redis never holds a key in clear; another
key gets 404 for it. With keys off, everything belongs to everyone.

The hash's secret is the ``OWNER_HASH_SECRET`` setting; without one, a random secret is created
once in Redis and shared by every front.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import redis
from flask import has_request_context

from app.limits import request_key

SECRET_KEY = "llm:owner-secret"


class Owners:
    """The owner of the current request, from its API key (``keys_on``: API_KEYS is set)."""

    def __init__(self, client: redis.Redis, keys_on: bool, secret: str | None = None) -> None:
        self.client = client
        self.keys_on = keys_on
        # Read from Redis on first use, not when the app is built: Redis may not be up yet.
        self._secret = secret.encode() if secret else None

    def current(self) -> str:
        """The owner of what the current request creates or reads ('' with API keys off)."""
        if not self.keys_on:
            return ""
        return self.of(request_key())

    def of(self, api_key: str) -> str:
        digest = hmac.new(self.secret(), api_key.encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def secret(self) -> bytes:
        if self._secret is None:
            self.client.set(SECRET_KEY, secrets.token_hex(32), nx=True)
            stored = self.client.get(SECRET_KEY)
            if stored is None:  # deleted between the two commands: make it again
                return self.secret()
            self._secret = stored if isinstance(stored, bytes) else stored.encode()
        return self._secret


class KeyWeights:
    """The current request's key for fair shares (its owner hash: see :mod:`config.lanes`) and
    that key's weight (``KEY_WEIGHTS``: key, or "*", -> weight; 1 when unnamed)."""

    def __init__(self, owners: Owners, weights: dict[str, float]) -> None:
        self.owners = owners
        self.weights = weights

    def current(self) -> tuple[str, float]:
        if not (self.owners.keys_on and has_request_context()):
            return "", 1.0  # keys off: one lane
        weight = self.weights.get(request_key(), self.weights.get("*", 1.0))
        return self.owners.current(), weight
