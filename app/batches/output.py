"""A finished batch's output and error files: each line's result rendered as its endpoint would
have answered (output), or its error (errors), as JSONL, in the lines' order."""

from __future__ import annotations

import uuid
from typing import Any, cast

import redis

from app.batches.lines import BatchLines, error_names
from app.errors import from_worker
from config.protocol import decode, encode
from config.results import JobError, JobResult

CHUNK = 500  # lines per Redis round trip
# What a failed result without an error stands for: from_worker makes it a plain 500.
_NO_ERROR: JobError = {"code": "", "message": "", "field": None, "details": {}}


def batch_key(batch_id: str, part: str = "") -> str:
    """The Redis key of a batch's record, or of one of its parts (see app.batches.service)."""
    return f"llm:batch:{batch_id}{':' + part if part else ''}"


def render_files(
    client: redis.Redis, lines: BatchLines, record: dict[str, Any], final: str
) -> tuple[bytes, bytes, int]:
    """Every line's output or error line (JSONL), and the tokens they used; ``final``: how the
    batch ends (a line that never ran was cut by its cancel or expiry)."""
    bid, endpoint = record["id"], record["endpoint"]
    output, errors, tokens = [], [], 0
    total = record["request_counts"]["total"]
    for start in range(0, total, CHUNK):
        raws = client.lrange(batch_key(bid, "lines"), start, start + CHUNK - 1)
        chunk = [decode(raw) for raw in raws]
        results = client.mget([batch_key(bid, f"result:{line['i']}") for line in chunk])
        for line, raw in zip(chunk, results, strict=True):
            entry = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"]}
            if "error" in line:  # its request was refused as the endpoint would have
                response = {"status_code": line["error"]["status"], "body": line["error"]["body"]}
                errors.append(
                    {**entry, "response": {**response, "request_id": None}, "error": None}
                )
                continue
            result = cast(JobResult, decode(raw)) if raw else None
            if result is None:  # never ran: the batch was cancelled or expired first
                code = "batch_cancelled" if final == "cancelled" else "batch_expired"
                message = f"The request did not run: the batch was {final} first."
                errors.append(
                    {**entry, "response": None, "error": {"code": code, "message": message}}
                )
                continue
            request_id = f"req_{line['job']['id']}"
            if result["status"] == "completed":
                body = lines.render(endpoint, line, line["job"]["id"], result)
                tokens += result["usage"].get("total_tokens", 0)
                response = {"status_code": 200, "request_id": request_id, "body": body}
                output.append({**entry, "response": response, "error": None})
            else:
                # The worker's error names a field of the job: the endpoint's name for it.
                api = from_worker(result["error"] or _NO_ERROR, error_names(endpoint))
                response = {"status_code": api.status, "request_id": request_id, "body": api.body}
                errors.append({**entry, "response": response, "error": None})
    return _jsonl(output), _jsonl(errors), tokens


def _jsonl(entries: list[dict[str, Any]]) -> bytes:
    return "".join(encode(e) + "\n" for e in entries).encode()
