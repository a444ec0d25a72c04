"""OpenAI-style errors: one exception type, one response helper, handlers for everything else."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from config import protocol
from config.events import ErrorEvent
from config.protocol import error_body
from config.results import JobError

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """Raise from a view to answer with an OpenAI error body and this HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_ or _TYPES.get(status, "server_error"), param, code)
        self.headers = headers or {}


# What a worker's domain error means over HTTP: code -> (status, OpenAI type, OpenAI code).
_WORKER_ERRORS = {
    protocol.INVALID_REQUEST: (400, "invalid_request_error", None),
    protocol.CONTEXT_LENGTH_EXCEEDED: (400, "invalid_request_error", "context_length_exceeded"),
    protocol.TOO_MANY_TOKENS: (400, "invalid_request_error", "max_tokens_per_request"),
    protocol.CANCELLED: (499, "invalid_request_error", "cancelled"),
    protocol.ENGINE_ERROR: (500, "server_error", "engine_error"),
    protocol.WORKER_ERROR: (500, "server_error", "worker_error"),
    protocol.WORKER_SHUTDOWN: (503, "service_unavailable_error", "worker_shutdown"),
}


# A job's fields, as the engine names them in its errors, and the request parameter each comes
# from (chat and completions; see :func:`param_names` for the other endpoints).
JOB_PARAMS: dict[str, str] = {
    "messages": "messages",
    "prompts": "prompt",
    "inputs": "input",
    "json_schema": "response_format",
    "tools": "tools",
    "params.max_tokens": "max_tokens",
    "params.logit_bias": "logit_bias",
}


def param_names(**renamed: str) -> dict[str, str]:
    """:data:`JOB_PARAMS` with some fields renamed, as an endpoint names its parameters:
    ``param_names(messages="input")`` for the Responses API."""
    return JOB_PARAMS | {field.replace("__", "."): name for field, name in renamed.items()}


def request_param(field: str | None, names: dict[str, str]) -> str | None:
    """The request parameter behind a job field (``prompts[1]`` -> ``prompt``): the field's
    longest prefix ``names`` knows, else its first part."""
    if field is None:
        return None
    prefix = field
    while prefix:
        if prefix in names:
            return names[prefix]
        cut = max(prefix.rfind("."), prefix.rfind("["))
        prefix = prefix[:cut] if cut > 0 else ""
    return field.split(".")[0].split("[")[0]


def from_worker(event: ErrorEvent | JobError, names: dict[str, str] = JOB_PARAMS) -> APIError:
    """The :class:`APIError` for a worker's terminal ``error`` event (an unknown code is a 500),
    its field named as the endpoint's parameter (``names``, see :func:`param_names`) in ``param``
    and where its message says ``{param}``."""
    status, type_, code = _WORKER_ERRORS.get(event.get("code"), (500, "server_error", None))
    param = request_param(event.get("field"), names)
    message = event.get("message") or "The model worker failed."
    return APIError(status, message.replace("{param}", param or "request"), param, code, type_)


def error_response(status: int, message: str, param: str | None = None, code: str | None = None):
    """A Flask response carrying an OpenAI error body."""
    return api_error_response(APIError(status, message, param, code))


def api_error_response(error: APIError):
    return jsonify(error.body), error.status, error.headers


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(APIError, api_error_response)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(exc.code or 500)
        return error_response(exc.code or 500, exc.description or exc.name, code=code)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "The server had an error while processing your request.")
