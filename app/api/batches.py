"""Batches: POST /v1/batches, GET /v1/batches, GET /v1/batches/<id>,
POST /v1/batches/<id>/cancel."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from marshmallow import fields, validate

from app.api.blueprint import bp
from app.batches import service
from app.batches.lines import ENDPOINTS
from app.body import read_json
from app.errors import APIError
from app.limits import key_digest, request_key
from app.owners import request_owner
from app.schemas import Lenient, load_request


class BatchCreateSchema(Lenient):
    input_file_id = fields.String(required=True)
    endpoint = fields.String(required=True, validate=validate.OneOf(ENDPOINTS))
    completion_window = fields.String(required=True, validate=validate.OneOf(["24h"]))
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)


SCHEMA = BatchCreateSchema()


@bp.post("/batches")
def create_batch():
    body: dict[str, Any] = load_request(SCHEMA, read_json())
    return jsonify(service.create(request_owner(), key_digest(request_key()), body))


@bp.get("/batches")
def list_batches():
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise APIError(400, "limit must be an integer from 1 to 100.", "limit")
    return jsonify(service.list_batches(request_owner(), int(limit), request.args.get("after")))


@bp.get("/batches/<batch_id>")
def retrieve_batch(batch_id: str):
    return jsonify(service.get(batch_id, request_owner()))


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    return jsonify(service.cancel(batch_id, request_owner()))
