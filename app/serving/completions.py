"""Text completions, request to job and result to response: one choice per prompt and per n (the
route: :mod:`app.api.completions`)."""

from __future__ import annotations

from app.schemas import CompletionSchema
from app.serving.generation import Choice, Reply, completion_logprobs


class CompletionFormat:
    schema = CompletionSchema()
    chunk_object = "text_completion"
    prefix = "cmpl"

    def job_fields(self, data: dict) -> dict:
        return {"kind": "completion", "prompts": data["prompt"]}

    def check(self, fields: dict, spec) -> None:
        """Nothing to compile: no grammar reaches this endpoint."""

    def start_chunks(self, reply: Reply, choices: int) -> list[dict]:
        return []

    def event_chunks(self, reply: Reply, data: dict, event: dict) -> list[dict]:
        offsets, index = reply.offsets, event["index"]
        echo = event.get("echo") or {}
        text = echo.get("text", "") + event["text"]
        logprobs = None
        if data.get("logprobs") is not None:
            entries = (echo.get("logprobs") or []) + (event.get("logprobs") or [])
            logprobs = completion_logprobs(entries, offsets.get(index, 0))
        offsets[index] = offsets.get(index, 0) + len(text)
        choice = {
            "index": index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": event["finish_reason"],
        }
        return [reply.chunk(self.chunk_object, choice)]

    def response(self, reply: Reply, data: dict, choices: list[Choice], usage: dict) -> dict:
        def one(c: Choice) -> dict:
            echo = c.echo or {}
            logprobs = None
            if data.get("logprobs") is not None:
                logprobs = completion_logprobs((echo.get("logprobs") or []) + c.logprobs, 0)
            return {
                "index": c.index,
                "text": echo.get("text", "") + c.text,
                "logprobs": logprobs,
                "finish_reason": c.finish_reason,
            }

        return {
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [one(c) for c in choices],
            "usage": usage,
        }


FORMAT = CompletionFormat()
