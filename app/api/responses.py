"""The Responses API: POST /v1/responses, GET and DELETE /v1/responses/<id>,
GET /v1/responses/<id>/input_items, POST /v1/responses/<id>/cancel
(see :mod:`app.responses.service`)."""

from __future__ import annotations

from flask import Response, jsonify, request

from app.api.blueprint import bp, limit_arg, order_arg, request_owner
from app.body import read_json
from app.errors import APIError
from app.responses.schema import ResponseCreateSchema
from app.schemas import load_request
from app.services import services
from app.sse import respond

SCHEMA = ResponseCreateSchema()


@bp.post("/responses")
def create_response() -> Response:
    data = load_request(SCHEMA, read_json())
    return respond(services().responses.create(data, request_owner()))


@bp.get("/responses/<response_id>")
def retrieve_response(response_id: str) -> Response:
    """The response; with ``stream=true``, a background response's stream again, from its start
    or after ``starting_after`` (a sequence number), then live until it ends."""
    if request.args.get("stream", "").lower() != "true":
        return jsonify(services().responses.retrieve(response_id, request_owner()))
    after = request.args.get("starting_after")
    if after is not None and not (after.isascii() and after.isdigit()):
        raise APIError(400, "starting_after must be a sequence number.", "starting_after")
    frames = services().responses.resume(response_id, request_owner(), _int(after))
    return respond(frames)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    return jsonify(services().responses.delete(response_id, request_owner()))


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str) -> Response:
    return jsonify(services().responses.cancel(response_id, request_owner()))


@bp.get("/responses/<response_id>/input_items")
def list_input_items(response_id: str) -> Response:
    limit, order = limit_arg(20, 100), order_arg()
    page = services().responses.input_items(
        response_id, request_owner(), limit, order, request.args.get("after")
    )
    return jsonify(page)
