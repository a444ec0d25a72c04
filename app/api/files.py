"""Files: POST /v1/files (multipart), GET /v1/files, GET /v1/files/<id>,
GET /v1/files/<id>/content, DELETE /v1/files/<id>."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request

from app.api.blueprint import bp
from app.errors import APIError
from app.files import PURPOSES
from app.owners import request_owner


def files():
    return current_app.extensions["files"]


@bp.post("/files")
def upload_file():
    # Files may be larger than other requests: their own limit, before the body is read.
    request.max_content_length = current_app.config["FILE_MAX_BYTES"]
    purpose = request.form.get("purpose")
    upload = request.files.get("file")
    if purpose not in PURPOSES:
        raise APIError(400, f"purpose must be one of {', '.join(PURPOSES)}.", "purpose")
    if upload is None:
        raise APIError(400, "A 'file' part is required (multipart/form-data).", "file")
    data = upload.read()
    if not data:
        raise APIError(400, "The file is empty.", "file")
    if purpose == "batch":
        lines = sum(1 for line in data.splitlines() if line.strip())
        limit = current_app.config["BATCH_MAX_LINES"]
        if lines > limit:
            raise APIError(
                400,
                f"The file has {lines} requests; a batch file may have at most {limit} "
                "(BATCH_MAX_LINES).",
                "file",
                "too_many_requests",
            )
    return jsonify(files().create(request_owner(), upload.filename or "file", purpose, data))


@bp.get("/files")
def list_files():
    limit = request.args.get("limit", "10000")
    order = request.args.get("order", "desc")
    if not limit.isdigit() or not 1 <= int(limit) <= 10000:
        raise APIError(400, "limit must be an integer from 1 to 10000.", "limit")
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'.", "order")
    page = files().list(
        request_owner(), request.args.get("purpose"), int(limit), request.args.get("after"), order
    )
    return jsonify(page)


@bp.get("/files/<file_id>")
def retrieve_file(file_id: str):
    return jsonify(files().get(file_id, request_owner()))


@bp.get("/files/<file_id>/content")
def file_content(file_id: str):
    return Response(files().content(file_id, request_owner()), mimetype="application/octet-stream")


@bp.delete("/files/<file_id>")
def delete_file(file_id: str):
    return jsonify(files().delete(file_id, request_owner()))
