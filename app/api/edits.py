"""POST /v1/edits: the legacy edits API, answered by a chat model through its chat template."""

from __future__ import annotations

from app.api.blueprint import bp
from app.chat_schemas import EditSchema
from app.serving.generation import Choice, Reply, serve_generation

SYSTEM = (
    "You edit text. Apply the user's instruction to the text they give and reply with the edited "
    "text only, without any comment."
)


class EditFormat:
    schema = EditSchema()
    prefix = "edit"
    chunk_object = "edit"

    def job_fields(self, data: dict) -> dict:
        text = data.get("input") or ""
        user = f"Instruction: {data['instruction']}\n\nText:\n{text}"
        return {
            "kind": "chat",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        }

    def check(self, fields: dict, spec) -> None:
        """Nothing to compile: no grammar reaches this endpoint."""

    def start_chunks(self, reply: Reply, choices: int) -> list[dict]:
        return []

    def event_chunks(self, reply: Reply, data: dict, event: dict) -> list[dict]:
        return []  # never streamed (the schema refuses stream)

    def response(self, reply: Reply, data: dict, choices: list[Choice], usage: dict) -> dict:
        return {
            "object": "edit",
            "created": reply.created,
            "choices": [{"text": c.text, "index": c.index} for c in choices],
            "usage": usage,
        }


FORMAT = EditFormat()


@bp.post("/edits")
def edits():
    return serve_generation(FORMAT)
