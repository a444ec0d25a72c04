"""POST /v1/chat/completions."""

from __future__ import annotations

from app.api import bp
from app.api.generation import Reply, serve_generation
from app.schemas import ChatCompletionSchema


class ChatFormat:
    schema = ChatCompletionSchema()
    prefix = "chatcmpl"

    def job_fields(self, data: dict) -> dict:
        return {"kind": "chat", "messages": data["messages"]}

    def _chunk(self, reply: Reply, choice: dict) -> dict:
        return {
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [choice],
        }

    def start_chunks(self, reply: Reply, data: dict, choices: int) -> list[dict]:
        # As OpenAI does: the first chunk of each choice carries the role and empty content.
        return [
            self._chunk(
                reply,
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            for i in range(choices)
        ]

    def chunk(self, reply: Reply, index: int, text: str, finish_reason: str | None) -> dict:
        delta = {"content": text} if text else {}
        return self._chunk(
            reply,
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason},
        )

    def response(self, reply: Reply, data: dict, choices: list[dict], usage: dict) -> dict:
        return {
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": c["index"],
                    "message": {"role": "assistant", "content": c["text"]},
                    "logprobs": None,
                    "finish_reason": c["finish_reason"],
                }
                for c in choices
            ],
            "usage": usage,
        }


FORMAT = ChatFormat()


@bp.post("/chat/completions")
def chat_completions():
    return serve_generation(FORMAT)
