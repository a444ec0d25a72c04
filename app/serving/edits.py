"""The legacy edits API, answered by a chat model through its chat template: an instruction and
a text become a chat job; never streamed (the route: :mod:`app.api.edits`)."""

from __future__ import annotations

from typing import Any

from app.chat_schemas import EditSchema
from app.errors import param_names
from app.serving.generation import Chunk, Format, Reply, ResultUsage
from config.protocol import Job, JobOptions, Params, chat_job
from config.registry import ModelSpec
from config.results import ChoiceResult

SYSTEM = (
    "You edit text. Apply the user's instruction to the text they give and reply with the edited "
    "text only, without any comment."
)


class EditFormat(Format):
    schema = EditSchema()  # it refuses ``stream``: no chunks to shape
    prefix = "edit"
    chunk_object = "edit"
    names = param_names(messages="input")  # its one conversation is made of its input

    def job(
        self, spec: ModelSpec, data: dict[str, Any], params: Params, options: JobOptions
    ) -> Job:
        """A chat job: no grammar reaches this endpoint, nothing to compile."""
        text = data.get("input") or ""
        user = f"Instruction: {data['instruction']}\n\nText:\n{text}"
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        return chat_job(spec.name, messages, params, **options)

    def response(
        self, reply: Reply, data: dict[str, Any], choices: list[ChoiceResult], usage: ResultUsage
    ) -> Chunk:
        return {
            "object": "edit",
            "created": reply.created,
            "choices": [{"text": c["text"], "index": c["index"]} for c in choices],
            "usage": usage,
        }


FORMAT = EditFormat()
