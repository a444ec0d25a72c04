"""POST /v1/chat/completions."""

from __future__ import annotations

from app.api import bp
from app.api.generation import Choice, Reply, chat_logprobs, serve_generation
from app.schemas import ChatCompletionSchema


class ChatFormat:
    schema = ChatCompletionSchema()
    chunk_object = "chat.completion.chunk"
    prefix = "chatcmpl"

    def job_fields(self, data: dict) -> dict:
        return {"kind": "chat", "messages": data["messages"]}

    def _chunk(self, reply: Reply, choice: dict) -> dict:
        return {
            "id": reply.id,
            "object": self.chunk_object,
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [choice],
        }

    def start_chunks(self, reply: Reply, choices: int) -> list[dict]:
        # As OpenAI does: the first chunk of each choice carries the role and empty content.
        delta = {"role": "assistant", "content": ""}
        return [
            self._chunk(
                reply, {"index": i, "delta": delta, "logprobs": None, "finish_reason": None}
            )
            for i in range(choices)
        ]

    def event_chunks(self, reply: Reply, data: dict, event: dict) -> list[dict]:
        chunks = []
        logprobs = event.get("logprobs")
        if event["text"] or logprobs:
            delta = {"content": event["text"]} if event["text"] else {}
            choice = {
                "index": event["index"],
                "delta": delta,
                "finish_reason": None,
                "logprobs": chat_logprobs(logprobs) if logprobs else None,
            }
            chunks.append(self._chunk(reply, choice))
        if event["finish_reason"]:
            choice = {
                "index": event["index"],
                "delta": {},
                "logprobs": None,
                "finish_reason": event["finish_reason"],
            }
            chunks.append(self._chunk(reply, choice))
        return chunks

    def response(self, reply: Reply, data: dict, choices: list[Choice], usage: dict) -> dict:
        wants_logprobs = bool(data.get("logprobs"))
        return {
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": chat_logprobs(c.logprobs) if wants_logprobs else None,
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            "usage": usage,
        }


FORMAT = ChatFormat()


@bp.post("/chat/completions")
def chat_completions():
    return serve_generation(FORMAT)
