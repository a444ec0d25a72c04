"""Text completions, request to job and result to response: one choice per prompt and per n (the
route: :mod:`app.api.completions`)."""

from __future__ import annotations

from typing import Any

from app.schemas import CompletionSchema
from app.serving.generation import Chunk, Format, Reply, ResultUsage, completion_logprobs
from config.events import Echo, TokenEvent, TokenLogprob
from config.protocol import Job, JobOptions, Params, Prompt, completion_job
from config.registry import ModelSpec
from config.results import ChoiceResult


class CompletionFormat(Format):
    schema = CompletionSchema()
    chunk_object = "text_completion"
    prefix = "cmpl"

    def prompts(self, data: dict[str, Any]) -> list[Prompt]:
        return data["prompt"]

    def job(
        self, spec: ModelSpec, data: dict[str, Any], params: Params, options: JobOptions
    ) -> Job:
        """The completion job: no grammar reaches this endpoint, nothing to compile."""
        return completion_job(spec.name, data["prompt"], params, **options)

    def event_chunks(self, reply: Reply, data: dict[str, Any], event: TokenEvent) -> list[Chunk]:
        offsets, index = reply.offsets, event["index"]
        echo = event.get("echo")
        text = (echo["text"] if echo else "") + event["text"]
        logprobs = None
        if data.get("logprobs") is not None:
            entries = [*_echoed_logprobs(echo), *(event.get("logprobs") or [])]
            logprobs = completion_logprobs(entries, offsets.get(index, 0))
        offsets[index] = offsets.get(index, 0) + len(text)
        choice = {
            "index": index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": event["finish_reason"],
        }
        return [reply.chunk(self.chunk_object, choice)]

    def response(
        self, reply: Reply, data: dict[str, Any], choices: list[ChoiceResult], usage: ResultUsage
    ) -> Chunk:
        def one(c: ChoiceResult) -> dict[str, Any]:
            echo = c["echo"]
            logprobs = None
            if data.get("logprobs") is not None:
                logprobs = completion_logprobs([*_echoed_logprobs(echo), *c["logprobs"]], 0)
            return {
                "index": c["index"],
                "text": (echo["text"] if echo else "") + c["text"],
                "logprobs": logprobs,
                "finish_reason": c["finish_reason"],
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


def _echoed_logprobs(echo: Echo | None) -> list[TokenLogprob]:
    """The prompt's logprob entries, with ``echo`` and ``logprobs``."""
    return (echo.get("logprobs") or []) if echo else []


FORMAT = CompletionFormat()
