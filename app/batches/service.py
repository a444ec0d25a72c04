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
from flask import current_app

from app.batches.lines import BatchError, prepare_line, read, render_line
from app.errors import APIError, from_worker
from app.listing import Index
from config.protocol import batch_progress, batch_queue, bulk_queue, decode, encode

LOCK_SECONDS = 120
CHUNK = 500  # lines per Redis round trip
TERMINAL = ("completed", "failed", "expired", "cancelled")
WINDOW = {"24h": 24 * 3600}


def _key(batch_id: str, part: str = "") -> str:
    return f"llm:batch:{batch_id}{':' + part if part else ''}"


def _client() -> redis.Redis:
    return current_app.extensions["redis"]


def create(owner: str, digest: str, body: dict[str, Any]) -> dict[str, Any]:
    files = current_app.extensions["files"]
    file = files.get(body["input_file_id"], owner, "input_file_id")
    if file["purpose"] != "batch":
        raise APIError(400, "The input file's purpose must be 'batch'.", "input_file_id")
    content = files.content(body["input_file_id"], owner)
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
    ttl = current_app.config["BATCHES_TTL"]
    try:
        requests = read(content, body["endpoint"], current_app.config["BATCH_MAX_LINES"])
    except BatchError as exc:
        record |= {"status": "failed", "failed_at": now}
        record["errors"] = {"object": "list", "data": exc.errors}
        _save(record, ttl)
        _index(owner).add(record["id"])
        return public(record)
    _prepare_lines(record, requests, owner, ttl)
    _save(record, ttl)
    pipe = _client().pipeline(transaction=False)
    _index(owner).add(record["id"], pipe)
    pipe.zadd("llm:batches", {record["id"]: now})
    pipe.execute()
    _enqueue(record)
    return public(record)


def _prepare_lines(record: dict, requests: list[dict], owner: str, ttl: int) -> None:
    """Each line's job (or its error: such a line fails alone), stored in order."""
    bid = record["id"]
    lines = []
    for index, request in enumerate(requests):
        line: dict[str, Any] = {"i": index, "custom_id": request["custom_id"]}
        try:
            line |= prepare_line(record["endpoint"], request["body"], owner)
            record["_model"] = line["model"]
            line["job"] |= {
                "id": uuid.uuid4().hex,
                "model": line["model"],
                "created": time.time(),
                "priority": "bulk",
                "batch": bid,
                "result_key": _key(bid, f"result:{index}"),
                "result_ttl": ttl,
                "progress_key": batch_progress(bid),
            }
        except APIError as exc:
            line["error"] = {"status": exc.status, "body": exc.body}
            record["_failed_early"] += 1
        lines.append(line)
    record["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
    for start in range(0, len(lines), CHUNK):
        _client().rpush(
            _key(bid, "lines"), *[encode(line) for line in lines[start : start + CHUNK]]
        )
    _client().expire(_key(bid, "lines"), ttl)


def _enqueue(record: dict) -> None:
    """Queue the lines not queued yet (all, or the rest after a front died doing it), then let
    the model's workers know the batch waits: in_progress."""
    client, bid = _client(), record["id"]
    if not client.set(_key(bid, "enqueue-lock"), 1, nx=True, ex=LOCK_SECONDS):
        return  # another front is at it
    try:
        total = record["request_counts"]["total"]
        while record["_enqueued"] < total:
            start = record["_enqueued"]
            raws = client.lrange(_key(bid, "lines"), start, start + CHUNK - 1)
            jobs = [encode(line["job"]) for line in map(decode, raws) if "job" in line]
            pipe = client.pipeline(transaction=True)
            if jobs:
                pipe.lpush(batch_queue(bid), *jobs)  # workers take from the other end
            record["_enqueued"] = start + len(raws)
            pipe.set(_key(bid), encode(record), keepttl=True)
            pipe.execute()
        client.expire(batch_queue(bid), current_app.config["BATCHES_TTL"])
        if record["status"] == "validating":
            record |= {"status": "in_progress", "in_progress_at": int(time.time())}
            _save(record)
        if record["_model"]:
            pipe = client.pipeline(transaction=True)
            pipe.lrem(bulk_queue(record["_model"]), 0, bid)
            pipe.lpush(bulk_queue(record["_model"]), bid)
            pipe.execute()
    finally:
        client.delete(_key(bid, "enqueue-lock"))


def get(batch_id: str, owner: str) -> dict[str, Any]:
    return public(_advance(_load(batch_id, owner)))


def list_batches(owner: str, limit: int, after: str | None) -> dict[str, Any]:
    """The owner's batches, newest first, after ``after``."""

    def load(ids: list[str]) -> list[dict[str, Any] | None]:
        raws = _client().mget([_key(batch_id) for batch_id in ids])
        return [public(_advance(decode(raw))) if raw else None for raw in raws]

    return _index(owner).page(limit, after, load)


def _index(owner: str) -> Index:
    """The owner's batches, in creation order (the lists' shared index, see app.listing)."""
    return Index(_client(), f"llm:batches:{owner or '-'}")


def cancel(batch_id: str, owner: str) -> dict[str, Any]:
    record = _load(batch_id, owner)
    if record["status"] in ("validating", "in_progress"):
        _client().delete(batch_queue(batch_id))  # the lines not taken never run
        record |= {"status": "cancelling", "cancelling_at": int(time.time())}
        _save(record)
    return public(_advance(record))


def _load(batch_id: str, owner: str) -> dict[str, Any]:
    raw = _client().get(_key(batch_id))
    record = decode(raw) if raw else None
    if record is None or record["_owner"] != owner:
        raise APIError(404, f"No batch found with id '{batch_id}'.", None, "not_found")
    return record


def _save(record: dict[str, Any], ttl: int | None = None) -> None:
    if ttl:
        _client().set(_key(record["id"]), encode(record), ex=ttl)
    else:
        _client().set(_key(record["id"]), encode(record), keepttl=True)


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _advance(record: dict[str, Any]) -> dict[str, Any]:
    """Move a batch on as far as its lines allow (see the module's docstring)."""
    status = record["status"]
    if (
        status in TERMINAL
        or status == "finalizing"
        and _client().exists(_key(record["id"], "final-lock"))
    ):
        return record
    if status == "validating":
        _enqueue(record)
        return record
    progress = {
        k.decode(): int(v) for k, v in _client().hgetall(batch_progress(record["id"])).items()
    }
    completed = progress.get("completed", 0)
    failed = progress.get("failed", 0) + record["_failed_early"]
    record["request_counts"] |= {"completed": completed, "failed": failed}
    in_flight = progress.get("taken", 0) - progress.get("completed", 0) - progress.get("failed", 0)
    in_flight -= progress.get("cancelled", 0)
    if status == "in_progress" and time.time() > record["expires_at"]:
        _client().delete(batch_queue(record["id"]))  # what has not started never will
        record["status"] = status = "expiring"
        _save(record)
    if status == "in_progress" and completed + failed >= record["request_counts"]["total"]:
        return _finalize(record, "completed")
    if status in ("cancelling", "expiring", "finalizing") and in_flight <= 0:
        final = {"cancelling": "cancelled", "expiring": "expired"}.get(status, "completed")
        return _finalize(record, final)
    if status == "expiring":
        return {**record, "status": "in_progress"}  # shown so until it has ended
    return record


def _finalize(record: dict[str, Any], final: str) -> dict[str, Any]:
    """Write the output and error files, count the tokens, end the batch (once, under a lock)."""
    client, bid = _client(), record["id"]
    if not client.set(_key(bid, "final-lock"), 1, nx=True, ex=LOCK_SECONDS):
        return record
    try:
        now = int(time.time())
        record |= {"status": "finalizing", "finalizing_at": now}
        _save(record)
        output, errors, tokens = _render(record, final)
        files = current_app.extensions["files"]
        if output:
            record["output_file_id"] = files.create(
                record["_owner"], f"{bid}_output.jsonl", "batch_output", output
            )["id"]
        if errors:
            record["error_file_id"] = files.create(
                record["_owner"], f"{bid}_error.jsonl", "batch_output", errors
            )["id"]
        current_app.extensions["limits"].add_digest_tokens(record["_digest"], tokens)
        record |= {"status": final, f"{final}_at": int(time.time())}
        _save(record)
        client.delete(
            batch_queue(bid),
            *[_key(bid, f"result:{i}") for i in range(record["request_counts"]["total"])],
        )
        return record
    finally:
        client.delete(_key(bid, "final-lock"))


def _render(record: dict[str, Any], final: str) -> tuple[bytes, bytes, int]:
    """Every line's output or error line (JSONL), and the tokens they used."""
    client, bid, endpoint = _client(), record["id"], record["endpoint"]
    output, errors, tokens = [], [], 0
    total = record["request_counts"]["total"]
    for start in range(0, total, CHUNK):
        lines = [decode(raw) for raw in client.lrange(_key(bid, "lines"), start, start + CHUNK - 1)]
        results = client.mget([_key(bid, f"result:{line['i']}") for line in lines])
        for line, raw in zip(lines, results, strict=True):
            entry = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"]}
            if "error" in line:  # its request was refused as the endpoint would have
                response = {"status_code": line["error"]["status"], "body": line["error"]["body"]}
                errors.append(
                    {**entry, "response": {**response, "request_id": None}, "error": None}
                )
                continue
            result = decode(raw) if raw else None
            if result is None:  # never ran: the batch was cancelled or expired first
                code = "batch_cancelled" if final == "cancelled" else "batch_expired"
                message = f"The request did not run: the batch was {final} first."
                errors.append(
                    {**entry, "response": None, "error": {"code": code, "message": message}}
                )
                continue
            request_id = f"req_{line['job']['id']}"
            if result["status"] == "completed":
                body = render_line(endpoint, line, line["job"]["id"], result)
                tokens += result["usage"].get("total_tokens", 0)
                response = {"status_code": 200, "request_id": request_id, "body": body}
                output.append({**entry, "response": response, "error": None})
            else:
                error = result.get("error") or {}
                api = _api_error(error)
                response = {"status_code": api.status, "request_id": request_id, "body": api.body}
                errors.append({**entry, "response": response, "error": None})
    return _jsonl(output), _jsonl(errors), tokens


def _api_error(error: dict) -> APIError:
    return from_worker(error)


def _jsonl(entries: list[dict]) -> bytes:
    return "".join(encode(e) + "\n" for e in entries).encode()


def batch_counts() -> dict[str, Any]:
    """Batches by status and their lines, over those still stored (for /metrics)."""
    client = _client()
    ids = client.zrange("llm:batches", 0, -1)
    statuses: dict[str, int] = {}
    lines = {"completed": 0, "failed": 0, "total": 0}
    gone = []
    for batch_id in ids:
        raw = client.get(_key(batch_id.decode() if isinstance(batch_id, bytes) else batch_id))
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
