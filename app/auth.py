"""API keys as in FastChat: with API_KEYS set, a request needs ``Authorization: Bearer <key>``."""

from __future__ import annotations

import hmac

from flask import current_app, request

from app.errors import APIError


def require_api_key() -> None:
    """``before_request`` hook of the API blueprint; a no-op when no keys are configured."""
    keys = current_app.config["API_KEYS"]
    if not keys:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    token = given.strip().encode()
    # Compare against every key, in constant time, so timing says nothing about a near miss.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key.encode())
    if scheme.lower() != "bearer" or not matched:
        raise APIError(
            401,
            "Incorrect API key provided. You can find your API keys in the server's API_KEYS.",
            code="invalid_api_key",
        )
