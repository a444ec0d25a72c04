"""The response bodies of the API as marshmallow schemas: what ``/openapi.json`` promises each
endpoint answers (schemathesis checks every response against them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from config.registry import ALL_CAPABILITIES


class ErrorDetail(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class ErrorResponse(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class PromptTokensDetails(Schema):
    cached_tokens = fields.Integer(required=True)  # read from the prefix cache


class CompletionTokensDetails(Schema):
    reasoning_tokens = fields.Integer(required=True)  # of the reply, spent thinking


class Usage(Schema):
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer(required=True)
    prompt_tokens_details = fields.Nested(PromptTokensDetails)  # generation only
    completion_tokens_details = fields.Nested(CompletionTokensDetails)  # generation only


class TopLogprob(Schema):
    token = fields.String(required=True)
    logprob = fields.Float(required=True)
    bytes = fields.List(fields.Integer(), required=True)


class TokenLogprob(TopLogprob):
    top_logprobs = fields.List(fields.Nested(TopLogprob), required=True)


class ChatLogprobs(Schema):
    content = fields.List(fields.Nested(TokenLogprob), required=True)


class FunctionCallOut(Schema):
    name = fields.String(required=True)
    arguments = fields.String(required=True)


class ToolCallOut(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    function = fields.Nested(FunctionCallOut, required=True)


class ChatMessage(Schema):
    role = fields.String(required=True)
    content = fields.String(required=True, allow_none=True)
    refusal = fields.String(allow_none=True)
    reasoning_content = fields.String()  # a reasoning model's thinking, apart from content
    reasoning = fields.String()  # the same (vLLM's newer name)
    tool_calls = fields.List(fields.Nested(ToolCallOut))
    function_call = fields.Nested(FunctionCallOut)


class ChatChoice(Schema):
    index = fields.Integer(required=True)
    message = fields.Nested(ChatMessage, required=True)
    logprobs = fields.Nested(ChatLogprobs, required=True, allow_none=True)
    finish_reason = fields.String(required=True)


class ChatCompletion(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True)
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    system_fingerprint = fields.String(allow_none=True)
    choices = fields.List(fields.Nested(ChatChoice), required=True)
    usage = fields.Nested(Usage, required=True)


class CompletionLogprobs(Schema):
    tokens = fields.List(fields.String(), required=True)
    token_logprobs = fields.List(fields.Float(allow_none=True), required=True)
    top_logprobs = fields.List(
        fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True), required=True
    )
    text_offset = fields.List(fields.Integer(), required=True)


class CompletionChoice(Schema):
    index = fields.Integer(required=True)
    text = fields.String(required=True)
    logprobs = fields.Nested(CompletionLogprobs, required=True, allow_none=True)
    finish_reason = fields.String(required=True)


class Completion(ChatCompletion):
    choices = fields.List(fields.Nested(CompletionChoice), required=True)


class EditChoice(Schema):
    index = fields.Integer(required=True)
    text = fields.String(required=True)


class Edit(Schema):
    object = fields.String(required=True)
    created = fields.Integer(required=True)
    choices = fields.List(fields.Nested(EditChoice), required=True)
    usage = fields.Nested(Usage, required=True)


class Embedding(Schema):
    object = fields.String(required=True)
    index = fields.Integer(required=True)
    embedding = fields.Raw(
        required=True,
        metadata={"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
    )


class EmbeddingList(Schema):
    object = fields.String(required=True)
    data = fields.List(fields.Nested(Embedding), required=True)
    model = fields.String(required=True)
    usage = fields.Nested(Usage, required=True)


class Model(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True)
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)
    root = fields.String()
    parent = fields.String(allow_none=True)
    capabilities = fields.List(
        fields.String(validate=validate.OneOf(ALL_CAPABILITIES)),
        metadata={"description": "What requests the model answers."},
    )
    permission = fields.List(fields.Dict())


class ModelList(Schema):
    object = fields.String(required=True)
    data = fields.List(fields.Nested(Model), required=True)


class StalledWorker(Schema):
    worker = fields.String(required=True)
    models = fields.List(fields.String(), required=True)


class Health(Schema):
    status = fields.String(required=True)
    reason = fields.String()
    models = fields.List(fields.String())
    stalled = fields.List(fields.Nested(StalledWorker))


# The component name each is published under in the document.
class RerankDocument(Schema):
    text = fields.String(required=True)


class RerankResult(Schema):
    index = fields.Integer(required=True)
    relevance_score = fields.Float(required=True)
    document = fields.Nested(RerankDocument)  # unless return_documents is false


class TotalTokens(Schema):
    total_tokens = fields.Integer(required=True)


class RerankResponse(Schema):
    id = fields.String(required=True)
    model = fields.String(required=True)
    results = fields.List(fields.Nested(RerankResult), required=True)
    usage = fields.Nested(TotalTokens, required=True)


class Score(Schema):
    index = fields.Integer(required=True)
    object = fields.String(required=True, validate=validate.Equal("score"))
    score = fields.Float(required=True)


class ScoreResponse(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("list"))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    data = fields.List(fields.Nested(Score), required=True)
    usage = fields.Nested(Usage, required=True)


class TokenizeResponse(Schema):
    count = fields.Integer(required=True)
    max_model_len = fields.Integer(required=True)
    tokens = fields.List(fields.Integer(), required=True)
    token_strs = fields.List(fields.String(), required=True, allow_none=True)


class DetokenizeResponse(Schema):
    prompt = fields.String(required=True)


COMPONENTS = {
    "ErrorResponse": ErrorResponse,
    "ChatCompletion": ChatCompletion,
    "Completion": Completion,
    "Edit": Edit,
    "EmbeddingList": EmbeddingList,
    "Model": Model,
    "ModelList": ModelList,
    "Health": Health,
    "RerankResponse": RerankResponse,
    "ScoreResponse": ScoreResponse,
    "TokenizeResponse": TokenizeResponse,
    "DetokenizeResponse": DetokenizeResponse,
}
