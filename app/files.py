"""Files (``/v1/files``): metadata in Redis (``llm:file:<id>``, listed per owner in
``llm:files:<owner>``), content in the blob store. Files live ``FILES_TTL`` seconds; a batch's
input, output and error files are what they are for."""

from __future__ import annotations

import time
import uuid
from typing import Any, NamedTuple

import redis
from werkzeug.datastructures import FileStorage

from app.blobs import BlobStore
from app.errors import APIError
from app.listing import Index
from config.protocol import decode, encode
from config.redisconn import Replicas, wait_for_replica

PURPOSES = ("batch", "batch_output", "user_data", "assistants", "fine-tune", "vision", "evals")


class Upload(NamedTuple):
    """A checked upload, as :meth:`FileStore.create` takes it after its owner."""

    filename: str
    purpose: str
    data: bytes


def _index(owner: str) -> str:
    return f"llm:files:{owner or '-'}"  # the owner's files, in creation order (app.listing)


class FileStore:
    """Files: their metadata in Redis, their content in ``blobs``, for ``ttl`` seconds.
    ``max_bytes`` (FILE_MAX_BYTES) caps an upload, ``batch_max_lines`` (BATCH_MAX_LINES) the
    requests of a batch file."""

    def __init__(
        self,
        client: redis.Redis,
        blobs: BlobStore,
        ttl: int,
        max_bytes: int,
        batch_max_lines: int,
        replicas: Replicas | None = None,
    ) -> None:
        self.replicas = replicas  # files outlive a failover (config/redisconn.py)
        self.client = client
        self.blobs = blobs
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.batch_max_lines = batch_max_lines

    def check_upload(self, purpose: str | None, upload: FileStorage | None) -> Upload:
        """An uploaded file (the ``file`` part of a multipart request, for ``purpose``), read
        and checked: a 400 for a bad purpose, no or an empty file, or a batch file of too many
        requests."""
        if purpose is None or purpose not in PURPOSES:
            raise APIError(400, f"purpose must be one of {', '.join(PURPOSES)}.", "purpose")
        if upload is None:
            raise APIError(400, "A 'file' part is required (multipart/form-data).", "file")
        data = upload.read()
        if not data:
            raise APIError(400, "The file is empty.", "file")
        limit = self.batch_max_lines
        if purpose == "batch":
            lines = sum(1 for line in data.splitlines() if line.strip())
            if lines > limit:
                raise APIError(
                    400,
                    f"The file has {lines} requests; a batch file may have at most {limit} "
                    "(BATCH_MAX_LINES).",
                    "file",
                    "too_many_requests",
                )
        return Upload(upload.filename or "file", purpose, data)

    def create(self, owner: str, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        now = int(time.time())
        file_id = f"file-{uuid.uuid4().hex}"
        file = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": now,
            "expires_at": now + self.ttl,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.blobs.put(file_id, data, self.ttl)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(f"llm:file:{file_id}", encode({**file, "owner": owner}), ex=self.ttl)
        Index(self.client, _index(owner)).add(file_id, pipe)
        pipe.execute()
        wait_for_replica(self.replicas)  # the content and its record
        return file

    def get(self, file_id: str, owner: str, param: str | None = None) -> dict[str, Any]:
        """A file's metadata; 404 if it does not exist or belongs to another key."""
        raw = self.client.get(f"llm:file:{file_id}")
        file = decode(raw) if raw else None
        if file is None or file.pop("owner") != owner:
            raise APIError(404, f"No such File object: {file_id}", param, "not_found")
        return file

    def content(self, file_id: str, owner: str) -> bytes:
        self.get(file_id, owner)
        data = self.blobs.get(file_id)
        if data is None:
            raise APIError(404, f"No such File object: {file_id}", None, "not_found")
        return data

    def delete(self, file_id: str, owner: str) -> dict[str, Any]:
        self.get(file_id, owner)
        self.blobs.delete(file_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(f"llm:file:{file_id}")
        pipe.zrem(_index(owner), file_id)
        pipe.execute()
        return {"id": file_id, "object": "file", "deleted": True}

    def list(
        self, owner: str, purpose: str | None, limit: int, after: str | None, order: str
    ) -> dict[str, Any]:
        """The owner's files, newest first (or oldest with ``order=asc``), after ``after``."""

        def load(ids: list[str]) -> list[dict[str, Any] | None]:
            files = [decode(raw) if raw else None for raw in self.client.mget(_file_keys(ids))]
            for file_id, file in zip(ids, files, strict=True):
                if file is None:
                    self.blobs.delete(file_id)  # its TTL ran out: its content goes too
                else:
                    file.pop("owner")
            return files

        def wanted(file: dict[str, Any]) -> bool:
            return purpose is None or file["purpose"] == purpose

        return Index(self.client, _index(owner)).page(limit, after, load, order, wanted)


def _file_keys(ids: list[str]) -> list[str]:
    return [f"llm:file:{i}" for i in ids]
