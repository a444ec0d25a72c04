"""Tokenize and detokenize with a served model's tokenizer (the routes: :mod:`app.api.tokens`).
A worker of the model answers at once, outside its engine's batch (workers/quick.py)."""

from __future__ import annotations

from typing import Any

from app.disconnect import client_gone_check
from app.errors import APIError, param_names
from app.jobs import JobService
from app.schemas import load_request
from app.token_schemas import DetokenizeSchema, TokenizeSchema
from config.events import Tokenized
from config.protocol import DETOKENIZE, DONE, Job, JobOptions, detokenize_job, tokenize_job
from config.registry import ModelSpec

TOKENIZE_SCHEMA, DETOKENIZE_SCHEMA = TokenizeSchema(), DetokenizeSchema()


class TokenService:
    """``/tokenize`` and ``/detokenize``: one quick job per request."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    def tokenize(self, body: Any) -> dict[str, Any]:
        """The prompt's (or the chat's) token ids, their count, the model's context length."""
        data = load_request(TOKENIZE_SCHEMA, body)
        spec = self.jobs.resolve(data["model"], None)  # any model: each has a tokenizer
        chat = "messages" in data
        special = data["add_special_tokens"]
        options: JobOptions = {
            "add_special_tokens": (not chat) if special is None else special,
            "add_generation_prompt": data["add_generation_prompt"],
            "token_strs": data["return_token_strs"],
        }
        if data["tools"]:
            options |= {"tools": data["tools"], "tool_choice": "auto"}
        if data.get("chat_template_kwargs"):
            options["chat_template_kwargs"] = data["chat_template_kwargs"]
        job = tokenize_job(spec.name, data.get("prompt"), data.get("messages"), **options)
        answer = self._ask(spec, job)
        return {
            "count": len(answer["tokens"]),
            "max_model_len": answer["max_model_len"],
            "tokens": answer["tokens"],
            "token_strs": answer.get("token_strs"),
        }

    def detokenize(self, body: Any) -> dict[str, Any]:
        """The text of the token ids."""
        data = load_request(DETOKENIZE_SCHEMA, body)
        spec = self.jobs.resolve(data["model"], None)  # any model: each has a tokenizer
        answer = self._ask(spec, detokenize_job(spec.name, data["tokens"]))
        return {"prompt": answer.get("text", "")}

    def _ask(self, spec: ModelSpec, job: Job) -> Tokenized:
        names = param_names(prompts="prompt")
        if job["kind"] == DETOKENIZE:
            names = param_names(prompts="tokens")
        done = self.jobs.ask(spec, job, client_gone_check(), names)[-1]
        if done["type"] != DONE or "tokenized" not in done:
            raise APIError(502, "The model worker's events ended without a result.")
        return done["tokenized"]
