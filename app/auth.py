"""API keys as in FastChat: with API_KEYS set, a request needs ``Authorization: Bearer <key>``.
An admin key (ADMIN_API_KEYS) is an API key too, and the only kind that may change what is served
(load and unload adapters)."""

from __future__ import annotations

import hmac

from flask import current_app, request

from app.errors import APIError


def require_api_key() -> None:
    """``before_request`` hook of the API blueprint; a no-op when no keys are configured."""
    keys = current_app.config["API_KEYS"]
    if not keys:
        return
    if not _presented(keys + current_app.config.get("ADMIN_API_KEYS", [])):
        raise APIError(
            401,
            "Incorrect API key provided. You can find your API keys in the server's API_KEYS.",
            code="invalid_api_key",
        )


def require_admin() -> None:
    """403 unless the request carries an admin key (none may, while ADMIN_API_KEYS is unset)."""
    keys = current_app.config.get("ADMIN_API_KEYS") or []
    if not keys:
        raise APIError(
            403,
            "Changing the models served needs an admin key, and this server has none "
            "(set ADMIN_API_KEYS).",
            code="permission_denied",
        )
    if not _presented(keys):
        raise APIError(
            403,
            "Changing the models served needs an admin key (one of ADMIN_API_KEYS).",
            code="permission_denied",
        )


def _presented(keys: list[str]) -> bool:
    """Whether the request's bearer key is one of ``keys``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    token = given.strip().encode()
    # Compare against every key, in constant time, so timing says nothing about a near miss.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key.encode())
    return scheme.lower() == "bearer" and matched
