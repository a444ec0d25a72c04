"""Domain errors of the engines. They know nothing of HTTP nor of the request's parameters: each
carries a code of the message contract (:data:`config.protocol.ERROR_CODES`), the field of the
job at fault (``messages``, ``prompts[1]``, ``params.max_tokens``) and the numbers its message
states; the front maps the code to an HTTP status and the field to the endpoint's parameter
(``app/errors.py``), which it writes where the message says ``{param}``."""

from __future__ import annotations

from typing import Any

from config.protocol import (
    CONTEXT_LENGTH_EXCEEDED,
    ENGINE_ERROR,
    INVALID_REQUEST,
    TOO_MANY_TOKENS,
    WORKER_ERROR,
)


class JobFailed(Exception):
    """A job that cannot run, or that failed: it ends with one ``error`` event of this code."""

    code = WORKER_ERROR

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class InvalidRequest(JobFailed):
    """The request's content cannot be run (bad text, bad token ids, a template that refuses the
    conversation)."""

    code = INVALID_REQUEST


class ContextLengthExceeded(InvalidRequest):
    code = CONTEXT_LENGTH_EXCEEDED


class TooManyTokens(InvalidRequest):
    """The job's prompts hold more tokens than one request may (MAX_REQUEST_TOKENS)."""

    code = TOO_MANY_TOKENS


class EngineFailed(JobFailed):
    """A step of the engine failed while the job was in it."""

    code = ENGINE_ERROR
