"""The serving objects without the app or Redis: each built with its collaborators (fakes
here), requests turned into complete jobs, batch lines through the same objects, and a worker's
error named as the endpoint that asked names its parameters."""

import flask
import pytest

from app.batches.lines import BatchLines, error_names
from app.caps import Caps
from app.errors import APIError, from_worker
from app.responses.items import RESPONSE_PARAMS, new_record, response_object
from app.responses.service import ResponseService
from app.serving import chat, completions, edits
from app.serving.embeddings import EmbeddingService
from app.serving.generation import GenerationService
from config.events import EventSequence
from config.protocol import BULK, CHAT, COMPLETION, EMBEDDING
from config.registry import ModelSpec
from config.results import ResultBuilder

SPEC = ModelSpec(name="llama", kind="chat", source="x", aliases=("gpt",))


class Jobs:
    """Resolves every name to one model; runs each job into the events it is given."""

    def __init__(self, events=()):
        self.events = list(events)
        self.ran = []
        self.live = []

    def resolve(self, name, kind, live=True):
        self.live.append(live)
        return SPEC

    def collect(self, spec, job, gone=None, names=None):
        self.ran.append((job, names))
        return self.events


class Limits:
    def __init__(self):
        self.recorded = []

    def record_usage(self, usage):
        self.recorded.append(usage)


CAPS = Caps(max_choices=8, max_embedding_inputs=4, max_request_tokens=100)


def services(events=()):
    jobs, limits = Jobs(events), Limits()
    generation = GenerationService(jobs, limits, CAPS)
    embeddings = EmbeddingService(jobs, limits, CAPS)
    responses = ResponseService(jobs, None, limits, max_request_tokens=100)
    return jobs, limits, generation, embeddings, responses


def complete(job, kind):
    assert job["kind"] == kind and job["model"] == "llama"  # the model's name, not the alias
    assert len(job["id"]) == 32 and job["created"] > 0


def test_each_endpoint_makes_a_complete_job():
    jobs, _, generation, embeddings, _ = services()
    messages = [{"role": "user", "content": "Hi"}]
    prepared = generation.prepare(chat.FORMAT, {"model": "gpt", "messages": messages, "n": 2})
    complete(prepared.job, CHAT)
    assert prepared.job["messages"] == messages and prepared.job["params"]["n"] == 2
    assert prepared.job["max_request_tokens"] == 100 and prepared.choices == 2
    assert "priority" not in prepared.job and "tools" not in prepared.job

    body = {"model": "gpt", "prompt": [[1, 2], [3]], "service_tier": "flex", "user": "u"}
    prepared = generation.prepare(completions.FORMAT, body)
    complete(prepared.job, COMPLETION)
    assert prepared.job["prompts"] == [[1, 2], [3]] and prepared.job["user"] == "u"
    assert prepared.job["priority"] == BULK and prepared.choices == 2

    prepared = generation.prepare(
        edits.FORMAT, {"model": "gpt", "instruction": "Fix", "input": "x"}
    )
    complete(prepared.job, CHAT)
    assert prepared.job["messages"][1]["content"] == "Instruction: Fix\n\nText:\nx"

    embedding = embeddings.prepare({"model": "gpt", "input": ["a", "b"]})
    complete(embedding.job, EMBEDDING)
    assert embedding.job["inputs"] == ["a", "b"] and "params" not in embedding.job
    assert jobs.live == [True, True, True, True]


def test_a_chat_job_carries_its_tools_and_schema():
    _, _, generation, _, _ = services()
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [tool],
        "response_format": {"type": "json_object"},
    }
    job = generation.prepare(chat.FORMAT, body).job
    assert job["tools"] == [{"name": "f", "parameters": {"type": "object"}}]
    assert job["tool_choice"] == "auto" and job["parallel_tool_calls"] is True
    assert job["json_schema"] == {}


def test_a_schema_that_cannot_compile_names_the_endpoint_s_parameter():
    _, _, generation, _, responses = services()
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}], "response_format": bad}
    with pytest.raises(APIError) as refused:
        generation.prepare(chat.FORMAT, body)
    assert refused.value.status == 400 and refused.value.body["error"]["param"] == "response_format"
    data = {
        "model": "gpt",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
        ],
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nonsense"}}},
    }
    with pytest.raises(APIError) as refused:
        responses.prepare("resp_1", data, owner="")
    assert refused.value.body["error"]["param"] == "text.format"


def test_batch_lines_go_through_the_serving_objects_with_the_batch_s_options():
    jobs, _, generation, embeddings, responses = services()
    lines = BatchLines(generation, embeddings, responses)
    options = {"priority": BULK, "batch": "b1", "result_key": "k", "result_ttl": 60}
    messages = [{"role": "user", "content": "Hi"}]
    line = lines.prepare(
        "/v1/chat/completions", {"model": "gpt", "messages": messages}, "", options
    )
    complete(line["job"], CHAT)
    assert line["model"] == "llama" and line["choices"] == 1
    assert {k: line["job"][k] for k in options} == options
    line = lines.prepare("/v1/embeddings", {"model": "gpt", "input": "a"}, "", options)
    complete(line["job"], EMBEDDING)
    assert line["job"]["batch"] == "b1"
    line = lines.prepare("/v1/responses", {"model": "gpt", "input": "Hi"}, "o", options)
    complete(line["job"], CHAT)
    assert line["record"]["request"]["store"] is False and line["job"]["result_key"] == "k"
    assert jobs.live == [False, False, False]  # a batch line may wait for a worker
    with pytest.raises(APIError):
        lines.prepare(
            "/v1/completions", {"model": "gpt", "prompt": "a", "stream": True}, "", options
        )


def test_a_recorded_worker_error_is_named_as_the_endpoint_names_it():
    builder = ResultBuilder()
    event = EventSequence("j").error(
        "context_length_exceeded", "{param} is too long: 9 tokens.", "messages", {"tokens": 9}
    )
    result = builder.add(event)
    body = from_worker(result["error"], error_names("/v1/chat/completions")).body["error"]
    assert body["param"] == "messages" and body["message"] == "messages is too long: 9 tokens."
    body = from_worker(result["error"], error_names("/v1/responses")).body["error"]
    assert body["param"] == "input" and body["message"] == "input is too long: 9 tokens."
    record = new_record("resp_1", "", {"model": "m", "background": True}, [])
    shown = response_object(record, result, "failed")["error"]
    assert shown == {"code": "context_length_exceeded", "message": "input is too long: 9 tokens."}
    assert error_names("/v1/responses") is RESPONSE_PARAMS


def test_a_non_streamed_generation_is_assembled_and_its_usage_counted():
    seq = EventSequence("j1")
    usage = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
    events = [
        seq.token({"index": 0, "text": "Hi", "token_ids": [5], "finish_reason": "stop"}),
        seq.done(usage),
    ]
    jobs, limits, generation, _, _ = services(events)
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    with flask.Flask(__name__).test_request_context():
        answer = generation.serve(chat.FORMAT, body)
    assert answer["id"] == "chatcmpl-j1" and answer["model"] == "gpt"
    assert answer["choices"][0]["message"]["content"] == "Hi" and answer["usage"] == usage
    assert limits.recorded == [usage]
    job, names = jobs.ran[0]
    complete(job, CHAT)
