"""Chat completions, request to job and result to response: tools (and the legacy functions) and
structured outputs, streamed or whole (the route: :mod:`app.api.chat`)."""

from __future__ import annotations

from typing import Any

from app.chat_schemas import ChatCompletionSchema
from app.errors import JOB_PARAMS, APIError, request_param
from app.reasoning import ReasoningControls
from app.serving.generation import Chunk, Format, Reply, ResultUsage, chat_logprobs
from config.events import TokenEvent, ToolCallDelta
from config.grammars import TOOL_FORMATS, GrammarError, request_grammar
from config.protocol import TOOL_CALLS, Job, JobOptions, Params, chat_job
from config.registry import ModelSpec
from config.results import CallResult, ChoiceResult


class ChatFormat(Format):
    schema = ChatCompletionSchema()
    chunk_object = "chat.completion.chunk"
    prefix = "chatcmpl"

    def job(
        self, spec: ModelSpec, data: dict[str, Any], params: Params, options: JobOptions
    ) -> Job:
        """The chat job; a schema that cannot be compiled is a 400 before anything is queued."""
        tools = data["tools"]  # the request's tools or functions, as the job's Tool entries
        try:
            request_grammar(
                data["json_schema"],
                tools or None,
                data["tool_choice"] if tools else "none",
                data["parallel_tool_calls"] if tools else True,
                TOOL_FORMATS[spec.tool_format],
            )
        except GrammarError as exc:  # it names a field of the job: the request's name for it
            raise APIError(400, str(exc), param=request_param(exc.param, JOB_PARAMS)) from None
        if tools:
            options |= {
                "tools": tools,
                "tool_choice": data["tool_choice"],
                "parallel_tool_calls": data["parallel_tool_calls"],
            }
        if data["json_schema"] is not None:
            options["json_schema"] = data["json_schema"]
        ReasoningControls.of_chat(data).apply(spec, params, options)
        return chat_job(spec.name, data["messages"], params, **options)

    def start_chunks(self, reply: Reply, choices: int) -> list[Chunk]:
        # As OpenAI does: the first chunk of each choice carries the role and empty content.
        delta = {"role": "assistant", "content": ""}
        first = {"delta": delta, "logprobs": None, "finish_reason": None}
        return [reply.chunk(self.chunk_object, {"index": i, **first}) for i in range(choices)]

    def event_chunks(self, reply: Reply, data: dict[str, Any], event: TokenEvent) -> list[Chunk]:
        chunks = []
        logprobs = event.get("logprobs")
        delta: dict[str, Any] = {"content": event["text"]} if event["text"] else {}
        if event.get("reasoning"):  # both names: vLLM's older and its newer
            delta["reasoning_content"] = delta["reasoning"] = event["reasoning"]
        if event.get("tool_calls"):
            delta |= _call_deltas(event["tool_calls"], data["legacy_functions"])
        if delta or logprobs:
            choice = {
                "index": event["index"],
                "delta": delta,
                "finish_reason": None,
                "logprobs": chat_logprobs(logprobs) if logprobs else None,
            }
            chunks.append(reply.chunk(self.chunk_object, choice))
        if event["finish_reason"]:
            choice = {
                "index": event["index"],
                "delta": {},
                "logprobs": None,
                "finish_reason": _finish_reason(event["finish_reason"], data),
            }
            chunks.append(reply.chunk(self.chunk_object, choice))
        return chunks

    def response(
        self, reply: Reply, data: dict[str, Any], choices: list[ChoiceResult], usage: ResultUsage
    ) -> Chunk:
        wants_logprobs = bool(data.get("logprobs"))
        return {
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": c["index"],
                    "message": _message(c, data["legacy_functions"]),
                    "logprobs": chat_logprobs(c["logprobs"]) if wants_logprobs else None,
                    "finish_reason": _finish_reason(c["finish_reason"], data),
                }
                for c in choices
            ],
            "usage": usage,
        }


def _message(choice: ChoiceResult, legacy: bool) -> dict[str, Any]:
    """The assistant's message: its text, its thinking (``reasoning_content`` and
    ``reasoning``, when it thought), and its calls in OpenAI's shape (content is null when the
    reply is only calls, as OpenAI sends it)."""
    message: dict[str, Any] = {"role": "assistant", "content": choice["text"], "refusal": None}
    if choice.get("reasoning"):  # a reasoning model's thinking, apart from its answer
        message["reasoning_content"] = message["reasoning"] = choice["reasoning"]
    if not choice["tool_calls"]:
        return message
    if not choice["text"]:
        message["content"] = None
    calls = [
        {"id": c["id"], "type": "function", "function": _function(c)} for c in choice["tool_calls"]
    ]
    if legacy:
        message["function_call"] = calls[0]["function"]
    else:
        message["tool_calls"] = calls
    return message


def _function(call: CallResult) -> dict[str, str]:
    return {"name": call["name"], "arguments": call["arguments"] or "{}"}


def _call_deltas(deltas: list[ToolCallDelta], legacy: bool) -> dict[str, Any]:
    """Engine tool-call deltas in OpenAI's delta shape: a call's first carries its index, id,
    type and name (and empty arguments); later ones carry argument fragments."""
    out: list[dict[str, Any]] = []
    for d in deltas:
        if "name" in d:
            function = {"name": d["name"], "arguments": d.get("arguments", "")}
            out.append(
                {"index": d["index"], "id": d["id"], "type": "function", "function": function}
            )
        else:
            out.append({"index": d["index"], "function": {"arguments": d["arguments"]}})
    if legacy:  # the older shape: one call, as delta.function_call
        merged: dict[str, str] = {}
        for call in out:
            for key, value in call["function"].items():
                merged[key] = merged.get(key, "") + value
        return {"function_call": merged}
    return {"tool_calls": out}


def _finish_reason(reason: str | None, data: dict[str, Any]) -> str | None:
    if reason == TOOL_CALLS and data["legacy_functions"]:
        return "function_call"
    return reason


FORMAT = ChatFormat()
