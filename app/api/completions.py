"""POST /v1/completions (one choice per prompt)."""

from __future__ import annotations

from app.api import bp
from app.api.generation import Reply, serve_generation
from app.schemas import CompletionSchema


class CompletionFormat:
    schema = CompletionSchema()
    prefix = "cmpl"

    def job_fields(self, data: dict) -> dict:
        return {"kind": "completion", "prompts": data["prompt"]}

    def _chunk(self, reply: Reply, index: int, text: str, finish_reason: str | None) -> dict:
        return {
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def start_chunks(self, reply: Reply, data: dict, choices: int) -> list[dict]:
        if not data["echo"]:
            return []
        return [self._chunk(reply, i, p, None) for i, p in enumerate(data["prompt"])]

    def chunk(self, reply: Reply, index: int, text: str, finish_reason: str | None) -> dict:
        return self._chunk(reply, index, text, finish_reason)

    def response(self, reply: Reply, data: dict, choices: list[dict], usage: dict) -> dict:
        echo = data["prompt"] if data["echo"] else [""] * len(choices)
        return {
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": c["index"],
                    "text": echo[c["index"]] + c["text"],
                    "logprobs": None,
                    "finish_reason": c["finish_reason"],
                }
                for c in choices
            ],
            "usage": usage,
        }


FORMAT = CompletionFormat()


@bp.post("/completions")
def completions():
    return serve_generation(FORMAT)
