"""A batch's input file read into lines: each checked as its endpoint checks a request and turned
into its job, or into the error its request would have got; and, once run, each result rendered
as the body its endpoint would have answered."""

from __future__ import annotations

import json
from typing import Any

from app.errors import JOB_PARAMS, APIError
from app.responses.items import RESPONSE_PARAMS, new_id, response_object, status_of
from app.responses.schema import ResponseCreateSchema
from app.responses.service import ResponseService
from app.schemas import load_request
from app.serving import chat, completions
from app.serving.embeddings import EmbeddingService
from app.serving.embeddings import render as render_embeddings
from app.serving.generation import Format, GenerationService, Reply, render
from config.protocol import JobOptions
from config.results import JobResult

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
RESPONSE_SCHEMA = ResponseCreateSchema()


class BatchError(Exception):
    """The file cannot be a batch (the batch fails): its ``errors`` say which line and why."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def read(content: bytes, endpoint: str, limit: int) -> list[dict[str, Any]]:
    """The file's requests: ``{"custom_id", "body"}`` each, in order; :class:`BatchError` for a
    line that is not JSON, a ``url`` other than the batch's endpoint, a missing or repeated
    ``custom_id``, a method other than POST, requests to several models, or too many lines."""
    errors, requests, seen, models = [], [], set(), set()
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        raise BatchError([_error("empty_file", "The input file has no requests.", None)])
    if len(lines) > limit:
        message = f"The input file has {len(lines)} requests; at most {limit} are allowed."
        raise BatchError([_error("too_many_requests", message, None)])
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except ValueError:
            errors.append(_error("invalid_json_line", "This line is not valid JSON.", number))
            continue
        if not isinstance(item, dict):
            errors.append(_error("invalid_json_line", "A line must be a JSON object.", number))
            continue
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error("missing_custom_id", "The line has no custom_id.", number))
        elif custom_id in seen:
            message = f"The custom_id {custom_id!r} is used by an earlier line."
            errors.append(_error("duplicate_custom_id", message, number))
        seen.add(custom_id)
        if item.get("url") != endpoint:
            message = f"The line's url {item.get('url')!r} is not the batch's endpoint {endpoint}."
            errors.append(_error("mismatched_url", message, number))
        if item.get("method", "POST") != "POST":
            errors.append(_error("invalid_method", "Only POST is supported.", number))
        body = item.get("body")
        if not isinstance(body, dict):
            errors.append(_error("missing_body", "The line has no JSON object 'body'.", number))
            continue
        models.add(body.get("model"))
        requests.append({"custom_id": custom_id, "body": body})
    if len(models) > 1 and not errors:
        message = "All the requests of a batch must use the same model."
        errors.append(_error("mixed_models", message, None))
    if errors:
        raise BatchError(errors[:100])
    return requests


def _error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


class BatchLines:
    """Batch lines through the endpoints' own services: each line checked and turned into its
    job as its endpoint would, and its result rendered as its endpoint would answer."""

    def __init__(
        self,
        generation: GenerationService,
        embeddings: EmbeddingService,
        responses: ResponseService,
    ) -> None:
        self.generation = generation
        self.embeddings = embeddings
        self.responses = responses

    def prepare(
        self, endpoint: str, body: dict[str, Any], owner: str, options: JobOptions
    ) -> dict[str, Any]:
        """A line's job (with ``options``, the batch's) and what rendering its result needs:
        ``{"job", "data", "model"}`` (the model's registry name) and, by endpoint, ``choices``
        or ``record``. Raises :class:`APIError` as the endpoint would answer the request."""
        if endpoint == EMBEDDINGS:
            embedding = self.embeddings.prepare(body, live=False, options=options)
            return {"job": embedding.job, "data": embedding.data, "model": embedding.spec.name}
        if endpoint == RESPONSES:
            data = load_request(RESPONSE_SCHEMA, body)
            chained = data.get("previous_response_id") or data.get("conversation")
            if chained or data.get("background") or data.get("stream"):
                raise APIError(
                    400,
                    "A batch line cannot chain, join a conversation, stream or run in the "
                    "background.",
                )
            data = {**data, "store": False}
            response = self.responses.prepare(
                new_id("resp"), data, owner, live=False, options=options
            )
            return {
                "job": response.job,
                "data": {},
                "model": response.spec.name,
                "record": response.record,
            }
        if body.get("stream"):
            raise APIError(400, "A batch line cannot stream.", "stream")
        prepared = self.generation.prepare(_format(endpoint), body, live=False, options=options)
        return {
            "job": prepared.job,
            "data": prepared.data,
            "model": prepared.spec.name,
            "choices": prepared.choices,
        }

    @staticmethod
    def render(
        endpoint: str, line: dict[str, Any], job_id: str, result: JobResult
    ) -> dict[str, Any]:
        """The response body the endpoint would have answered for a line's result."""
        if endpoint == EMBEDDINGS:
            return render_embeddings(line["data"], result["data"], result["usage"])
        if endpoint == RESPONSES:
            return response_object(line["record"], result, status_of(result, "completed"))
        fmt = _format(endpoint)
        reply = Reply(fmt.prefix, job_id, line["data"]["model"])
        return render(fmt, reply, line["data"], line["choices"], result)


def error_names(endpoint: str) -> dict[str, str]:
    """The endpoint's names for a job's fields, in the errors of its lines."""
    return RESPONSE_PARAMS if endpoint == RESPONSES else JOB_PARAMS


def _format(endpoint: str) -> Format:
    return chat.FORMAT if endpoint == "/v1/chat/completions" else completions.FORMAT
