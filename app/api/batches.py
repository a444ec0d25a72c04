"""Batches: POST /v1/batches, GET /v1/batches, GET /v1/batches/<id>,
POST /v1/batches/<id>/cancel (see :mod:`app.batches.service`)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from marshmallow import fields, validate

from app.api.blueprint import bp, limit_arg, request_owner
from app.batches.lines import ENDPOINTS
from app.body import read_json
from app.limits import key_digest, request_key
from app.schemas import Lenient, load_request
from app.services import services


class BatchCreateSchema(Lenient):
    input_file_id = fields.String(required=True)
    endpoint = fields.String(required=True, validate=validate.OneOf(ENDPOINTS))
    completion_window = fields.String(required=True, validate=validate.OneOf(["24h"]))
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)


SCHEMA = BatchCreateSchema()


@bp.post("/batches")
def create_batch() -> Response:
    body: dict[str, Any] = load_request(SCHEMA, read_json())
    batch = services().batches.create(request_owner(), key_digest(request_key()), body)
    return jsonify(batch)


@bp.get("/batches")
def list_batches() -> Response:
    limit, after = limit_arg(20, 100), request.args.get("after")
    return jsonify(services().batches.list_batches(request_owner(), limit, after))


@bp.get("/batches/<batch_id>")
def retrieve_batch(batch_id: str) -> Response:
    return jsonify(services().batches.get(batch_id, request_owner()))


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    return jsonify(services().batches.cancel(batch_id, request_owner()))
