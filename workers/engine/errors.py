"""Domain errors of the engines. They know nothing of HTTP: each carries a code of the message
contract (:data:`config.protocol.ERROR_CODES`) and the request parameter at fault, and the front
maps the code to an HTTP status (``app/errors.py``)."""

from __future__ import annotations

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

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


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
