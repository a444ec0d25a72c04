"""The Responses API: POST /v1/responses, GET and DELETE /v1/responses/<id>,
GET /v1/responses/<id>/input_items, POST /v1/responses/<id>/cancel."""

from __future__ import annotations

from flask import jsonify, request

from app.api.blueprint import bp
from app.body import read_json
from app.errors import APIError
from app.owners import request_owner
from app.responses import service
from app.responses.schema import ResponseCreateSchema
from app.schemas import load_request
from app.sse import sse_response

SCHEMA = ResponseCreateSchema()


@bp.post("/responses")
def create_response():
    data = load_request(SCHEMA, read_json())
    answer = service.create(data, request_owner())
    return jsonify(answer) if isinstance(answer, dict) else sse_response(answer)


@bp.get("/responses/<response_id>")
def retrieve_response(response_id: str):
    return jsonify(service.retrieve(response_id, request_owner()))


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str):
    return jsonify(service.delete(response_id, request_owner()))


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str):
    return jsonify(service.cancel(response_id, request_owner()))


@bp.get("/responses/<response_id>/input_items")
def list_input_items(response_id: str):
    limit = request.args.get("limit", "20")
    order = request.args.get("order", "desc")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise APIError(400, "limit must be an integer from 1 to 100.", "limit")
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'.", "order")
    page = service.input_items(
        response_id, request_owner(), int(limit), order, request.args.get("after")
    )
    return jsonify(page)
