"""Files (``/v1/files``): metadata in Redis (``llm:file:<id>``, listed per owner in
``llm:files:<owner>``), content in the blob store. Files live ``FILES_TTL`` seconds; a batch's
input, output and error files are what they are for."""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from app.blobs import BlobStore
from app.errors import APIError
from config.protocol import decode, encode

PURPOSES = ("batch", "batch_output", "user_data", "assistants", "fine-tune", "vision", "evals")


def _index(owner: str) -> str:
    return f"llm:files:{owner or '-'}"


class FileStore:
    def __init__(self, client: redis.Redis, blobs: BlobStore, ttl: int) -> None:
        self.client = client
        self.blobs = blobs
        self.ttl = ttl

    def create(self, owner: str, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        now = int(time.time())
        file = {
            "id": f"file-{uuid.uuid4().hex}",
            "object": "file",
            "bytes": len(data),
            "created_at": now,
            "expires_at": now + self.ttl,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.blobs.put(file["id"], data, self.ttl)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(f"llm:file:{file['id']}", encode({**file, "owner": owner}), ex=self.ttl)
        pipe.zadd(_index(owner), {file["id"]: now})
        pipe.execute()
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
        ids = [
            i.decode() if isinstance(i, bytes) else i
            for i in self.client.zrange(_index(owner), 0, -1)
        ]
        if order == "desc":
            ids.reverse()
        raws = self.client.mget([f"llm:file:{i}" for i in ids]) if ids else []
        files, expired = [], []
        for file_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                expired.append(file_id)  # its TTL ran out: clean the index up
                continue
            file = decode(raw)
            file.pop("owner")
            if purpose is None or file["purpose"] == purpose:
                files.append(file)
        if expired:
            self.client.zrem(_index(owner), *expired)
            for file_id in expired:
                self.blobs.delete(file_id)
        start = next((i + 1 for i, f in enumerate(files) if f["id"] == after), 0)
        page = files[start : start + limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(files),
        }
