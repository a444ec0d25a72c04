"""Files: POST /v1/files (multipart), GET /v1/files, GET /v1/files/<id>,
GET /v1/files/<id>/content, DELETE /v1/files/<id> (see :mod:`app.files`)."""

from __future__ import annotations

from flask import Response, jsonify, request

from app.api.blueprint import bp, limit_arg, order_arg, request_owner
from app.services import services


@bp.post("/files")
def upload_file() -> Response:
    files = services().files
    # Files may be larger than other requests: their own limit, before the body is read.
    request.max_content_length = files.max_bytes
    upload = files.check_upload(request.form.get("purpose"), request.files.get("file"))
    return jsonify(files.create(request_owner(), *upload))


@bp.get("/files")
def list_files() -> Response:
    limit, order = limit_arg(10000, 10000), order_arg()
    purpose, after = request.args.get("purpose"), request.args.get("after")
    return jsonify(services().files.list(request_owner(), purpose, limit, after, order))


@bp.get("/files/<file_id>")
def retrieve_file(file_id: str) -> Response:
    return jsonify(services().files.get(file_id, request_owner()))


@bp.get("/files/<file_id>/content")
def file_content(file_id: str) -> Response:
    content = services().files.content(file_id, request_owner())
    return Response(content, mimetype="application/octet-stream")


@bp.delete("/files/<file_id>")
def delete_file(file_id: str) -> Response:
    return jsonify(services().files.delete(file_id, request_owner()))
