"""Who owns stored objects (responses, and later files and batches): when API keys are on, the
key that created one, kept as a keyed hash (HMAC-SHA256) so that Redis never holds a key in
clear; another key gets 404 for it. With keys off, everything belongs to everyone.

The hash's secret is the ``OWNER_HASH_SECRET`` setting; without one, a random secret is created
once in Redis and shared by every front.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import redis
from flask import current_app

from app.limits import request_key

SECRET_KEY = "llm:owner-secret"


def request_owner() -> str:
    """The owner of what the current request creates or reads ('' with API keys off)."""
    if not current_app.config["API_KEYS"]:
        return ""
    return owner_of(request_key())


def owner_of(api_key: str) -> str:
    digest = hmac.new(_secret(), api_key.encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def _secret() -> bytes:
    cached = current_app.extensions.get("owner_secret")
    if cached is None:
        configured = current_app.config.get("OWNER_HASH_SECRET")
        if configured:
            cached = configured.encode()
        else:
            client: redis.Redis = current_app.extensions["redis"]
            client.set(SECRET_KEY, secrets.token_hex(32), nx=True)
            cached = client.get(SECRET_KEY)
        current_app.extensions["owner_secret"] = cached
    return cached
