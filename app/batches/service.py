"""Batches: created from an input file, run line by line as bulk jobs, finalized into output and
error files. The state lives in Redis (``llm:batch:<id>``: the record; ``...:lines``: each line's
job and what rendering its result needs; ``...:queue``: the lines not taken yet;
``...:progress``: counts the workers keep; ``...:result:<n>``: each line's result, recorded
once), so any front answers for any batch, and every step is safe to do again:

- creating validates the file and queues its lines (resumed by the next read if the front that
  began it died: ``enqueued`` says how far it got);
- a read (``GET``, list) moves a batch on: it finalizes one whose lines all ended, one cancelled
  or expired once the lines already taken have ended (those not taken are dropped at once).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from app.batches.lines import BatchError, BatchLines, read
from app.batches.output import CHUNK, batch_key, render_files
from app.errors import APIError
from app.files import FileStore
from app.limits import RateLimiter
from app.listing import Index, text
from app.metrics import BatchCounts
from config.keys import batch_progress, batch_queue, bulk_queue
from config.protocol import BULK, JobOptions, decode, encode
from config.redisconn import Replicas, wait_for_replica

LOCK_SECONDS = 120
TERMINAL = ("completed", "failed", "expired", "cancelled")
WINDOW = {"24h": 24 * 3600}


class BatchService:
    """``/v1/batches``: ``lines`` prepares and renders each line through its endpoint's
    service; ``files`` holds the input and output files; ``limits`` counts the tokens the lines
    used, once they end. ``ttl``: BATCHES_TTL; ``max_lines``: BATCH_MAX_LINES."""

    def __init__(
        self,
        client: redis.Redis,
        files: FileStore,
        limits: RateLimiter,
        lines: BatchLines,
        ttl: int,
        max_lines: int,
        replicas: Replicas | None = None,
    ) -> None:
        self.replicas = replicas  # a batch's end outlives a failover (config/redisconn.py)
        self.client = client
        self.files = files
        self.limits = limits
        self.lines = lines
        self.ttl = ttl
        self.max_lines = max_lines

    def create(self, owner: str, digest: str, body: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(body["input_file_id"], owner, "input_file_id")
        if file["purpose"] != "batch":
            raise APIError(400, "The input file's purpose must be 'batch'.", "input_file_id")
        content = self.files.content(body["input_file_id"], owner)
        now = int(time.time())
        record = {
            "id": f"batch_{uuid.uuid4().hex}",
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + WINDOW[body["completion_window"]],
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or {},
            # not shown: who owns it, what its lines hold, how far their queueing got
            "_owner": owner,
            "_digest": digest,
            "_model": None,
            "_enqueued": 0,
            "_failed_early": 0,
        }
        try:
            requests = read(content, body["endpoint"], self.max_lines)
        except BatchError as exc:
            record |= {"status": "failed", "failed_at": now}
            record["errors"] = {"object": "list", "data": exc.errors}
            self._save(record, self.ttl)
            self._index(owner).add(record["id"])
            return public(record)
        self._prepare_lines(record, requests, owner)
        self._save(record, self.ttl)
        pipe = self.client.pipeline(transaction=False)
        self._index(owner).add(record["id"], pipe)
        pipe.zadd("llm:batches", {record["id"]: now})
        pipe.execute()
        self._enqueue(record)
        return public(record)

    def _prepare_lines(
        self, record: dict[str, Any], requests: list[dict[str, Any]], owner: str
    ) -> None:
        """Each line's job (or its error: such a line fails alone), stored in order."""
        bid = record["id"]
        lines = []
        for index, request in enumerate(requests):
            line: dict[str, Any] = {"i": index, "custom_id": request["custom_id"]}
            # A bulk job in the batch's own queue; the worker records its result once.
            options: JobOptions = {
                "priority": BULK,
                "batch": bid,
                "result_key": batch_key(bid, f"result:{index}"),
                "result_ttl": self.ttl,
                "progress_key": batch_progress(bid),
            }
            try:
                line |= self.lines.prepare(record["endpoint"], request["body"], owner, options)
                record["_model"] = line["model"]
            except APIError as exc:
                line["error"] = {"status": exc.status, "body": exc.body}
                record["_failed_early"] += 1
            lines.append(line)
        record["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        for start in range(0, len(lines), CHUNK):
            self.client.rpush(
                batch_key(bid, "lines"), *[encode(line) for line in lines[start : start + CHUNK]]
            )
        self.client.expire(batch_key(bid, "lines"), self.ttl)

    def _enqueue(self, record: dict[str, Any]) -> None:
        """Queue the lines not queued yet (all, or the rest after a front died doing it), then let
        the model's workers know the batch waits: in_progress."""
        client, bid = self.client, record["id"]
        if not client.set(batch_key(bid, "enqueue-lock"), 1, nx=True, ex=LOCK_SECONDS):
            return  # another front is at it
        try:
            total = record["request_counts"]["total"]
            while record["_enqueued"] < total:
                start = record["_enqueued"]
                raws = client.lrange(batch_key(bid, "lines"), start, start + CHUNK - 1)
                jobs = [encode(line["job"]) for line in map(decode, raws) if "job" in line]
                pipe = client.pipeline(transaction=True)
                if jobs:
                    pipe.lpush(batch_queue(bid), *jobs)  # workers take from the other end
                record["_enqueued"] = start + len(raws)
                pipe.set(batch_key(bid), encode(record), keepttl=True)
                pipe.execute()
            client.expire(batch_queue(bid), self.ttl)
            if record["status"] == "validating":
                record |= {"status": "in_progress", "in_progress_at": int(time.time())}
                self._save(record)
            if record["_model"]:
                pipe = client.pipeline(transaction=True)
                pipe.lrem(bulk_queue(record["_model"]), 0, bid)
                pipe.lpush(bulk_queue(record["_model"]), bid)
                pipe.execute()
        finally:
            client.delete(batch_key(bid, "enqueue-lock"))

    def get(self, batch_id: str, owner: str) -> dict[str, Any]:
        return public(self._advance(self._load(batch_id, owner)))

    def list_batches(self, owner: str, limit: int, after: str | None) -> dict[str, Any]:
        """The owner's batches, newest first, after ``after``."""

        def load(ids: list[str]) -> list[dict[str, Any] | None]:
            raws = self.client.mget([batch_key(batch_id) for batch_id in ids])
            return [public(self._advance(decode(raw))) if raw else None for raw in raws]

        return self._index(owner).page(limit, after, load)

    def _index(self, owner: str) -> Index:
        """The owner's batches, in creation order (the lists' shared index, see app.listing)."""
        return Index(self.client, f"llm:batches:{owner or '-'}")

    def cancel(self, batch_id: str, owner: str) -> dict[str, Any]:
        record = self._load(batch_id, owner)
        if record["status"] in ("validating", "in_progress"):
            self.client.delete(batch_queue(batch_id))  # the lines not taken never run
            record |= {"status": "cancelling", "cancelling_at": int(time.time())}
            self._save(record)
        return public(self._advance(record))

    def _load(self, batch_id: str, owner: str) -> dict[str, Any]:
        raw = self.client.get(batch_key(batch_id))
        record = decode(raw) if raw else None
        if record is None or record["_owner"] != owner:
            raise APIError(404, f"No batch found with id '{batch_id}'.", None, "not_found")
        return record

    def _save(self, record: dict[str, Any], ttl: int | None = None) -> None:
        if ttl:
            self.client.set(batch_key(record["id"]), encode(record), ex=ttl)
        else:
            self.client.set(batch_key(record["id"]), encode(record), keepttl=True)

    def _advance(self, record: dict[str, Any]) -> dict[str, Any]:
        """Move a batch on as far as its lines allow (see the module's docstring)."""
        status = record["status"]
        if (
            status in TERMINAL
            or status == "finalizing"
            and self.client.exists(batch_key(record["id"], "final-lock"))
        ):
            return record
        if status == "validating":
            self._enqueue(record)
            return record
        counts = self.client.hgetall(batch_progress(record["id"]))
        progress = {text(k): int(v) for k, v in counts.items()}
        completed = progress.get("completed", 0)
        failed = progress.get("failed", 0) + record["_failed_early"]
        record["request_counts"] |= {"completed": completed, "failed": failed}
        in_flight = (
            progress.get("taken", 0) - progress.get("completed", 0) - progress.get("failed", 0)
        )
        in_flight -= progress.get("cancelled", 0)
        if status == "in_progress" and time.time() > record["expires_at"]:
            self.client.delete(batch_queue(record["id"]))  # what has not started never will
            record["status"] = status = "expiring"
            self._save(record)
        if status == "in_progress" and completed + failed >= record["request_counts"]["total"]:
            return self._finalize(record, "completed")
        if status in ("cancelling", "expiring", "finalizing") and in_flight <= 0:
            final = {"cancelling": "cancelled", "expiring": "expired"}.get(status, "completed")
            return self._finalize(record, final)
        if status == "expiring":
            return {**record, "status": "in_progress"}  # shown so until it has ended
        return record

    def _finalize(self, record: dict[str, Any], final: str) -> dict[str, Any]:
        """Write the output and error files, count the tokens, end the batch (once, under a
        lock)."""
        client, bid = self.client, record["id"]
        if not client.set(batch_key(bid, "final-lock"), 1, nx=True, ex=LOCK_SECONDS):
            return record
        try:
            now = int(time.time())
            record |= {"status": "finalizing", "finalizing_at": now}
            self._save(record)
            output, errors, tokens = render_files(self.client, self.lines, record, final)
            if output:
                record["output_file_id"] = self.files.create(
                    record["_owner"], f"{bid}_output.jsonl", "batch_output", output
                )["id"]
            if errors:
                record["error_file_id"] = self.files.create(
                    record["_owner"], f"{bid}_error.jsonl", "batch_output", errors
                )["id"]
            self.limits.add_digest_tokens(record["_digest"], tokens)
            record |= {"status": final, f"{final}_at": int(time.time())}
            self._save(record)
            wait_for_replica(self.replicas)  # its end, and its files, before its lines go
            client.delete(
                batch_queue(bid),
                *[batch_key(bid, f"result:{i}") for i in range(record["request_counts"]["total"])],
            )
            return record
        finally:
            client.delete(batch_key(bid, "final-lock"))


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def batch_counts(client: redis.Redis) -> BatchCounts:
    """Batches by status and their lines, over those still stored (for /metrics)."""
    statuses: dict[str, int] = {}
    lines = {"completed": 0, "failed": 0, "total": 0}
    gone: list[str] = []
    for member in client.zrange("llm:batches", 0, -1):
        batch_id = text(member)
        raw = client.get(batch_key(batch_id))
        if raw is None:
            gone.append(batch_id)
            continue
        record = decode(raw)
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        for key in lines:
            lines[key] += record["request_counts"][key]
    if gone:
        client.zrem("llm:batches", *gone)
    return {"statuses": statuses, "lines": lines}
