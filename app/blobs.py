"""Where large blobs (batch input and output files) live, behind one small interface, so that a
deployment can move them without touching the API code: Redis by default (every front and worker
already reaches it), or a directory every front shares (``FILES_DIR``: a network file system, or
an object store mounted as one), which keeps large files out of Redis' memory."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import redis


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, ttl: int) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...


class RedisBlobs:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def put(self, key: str, data: bytes, ttl: int) -> None:
        self.client.set(f"llm:blob:{key}", data, ex=ttl)

    def get(self, key: str) -> bytes | None:
        data = self.client.get(f"llm:blob:{key}")
        return data.encode() if isinstance(data, str) else data

    def delete(self, key: str) -> None:
        self.client.delete(f"llm:blob:{key}")


class DirectoryBlobs:
    """Blobs as files in a shared directory; expiry is the metadata's (a file whose record has
    expired is removed when next looked up, or by ``delete``)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key.replace("/", "_")

    def put(self, key: str, data: bytes, ttl: int) -> None:
        partial = self._path(f"{key}.partial")
        partial.write_bytes(data)
        partial.rename(self._path(key))  # readers never see half a file

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
