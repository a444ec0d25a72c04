"""GET /openapi.json: the API as an OpenAPI 3 document, built by apispec from the marshmallow
request schemas (the very ones that validate requests) and the response schemas of
:mod:`app.openapi_responses`.

The document is built per front: each ``model`` parameter lists the names of its registry, so
generated clients and fuzzers see which models this deployment serves.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields

from app import chat_schemas, schemas, scoring_schemas, token_schemas
from app.conversations import schema as conversation_schema
from app.openapi_paths import (
    adapter_paths,
    conversations_paths,
    error_responses,
    generation,
    json_content,
    responses_paths,
    scoring_paths,
    token_paths,
)
from app.openapi_responses import COMPONENTS
from app.responses import schema as response_schema
from app.services import services
from config.registry import CHAT, EMBEDDING, SCORING, ModelSpec, public_names

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.0.3"
ANY = "any"  # a request any model answers (tokenize)
STRINGS = {"type": "array", "items": {"type": "string"}}
TOKENS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
TEXT_PART = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    "required": ["type", "text"],
}
# The custom request fields, which marshmallow alone cannot describe.
CUSTOM_FIELDS: dict[type[fields.Field], dict[str, Any]] = {
    scoring_schemas.Document: {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 1}},
                "required": ["text"],
            },
        ]
    },
    schemas.StringOrList: {"oneOf": [{"type": "string"}, STRINGS]},
    schemas.Prompt: {
        "oneOf": [
            {"type": "string"},
            {**STRINGS, "minItems": 1},
            TOKENS,
            {"type": "array", "items": TOKENS, "minItems": 1},
        ]
    },
    chat_schemas.MessageContent: {
        "oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}],
        "nullable": True,
    },
    # A mode, or a function by name: {"type": "function", "function": {"name"}} in chat,
    # {"type": "function", "name"} in the Responses API.
    chat_schemas.ToolChoice: {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {"type": "object"},
        ],
        "nullable": True,
    },
    response_schema.ResponseInput: {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}, "minItems": 1}]
    },
    response_schema.ConversationRef: {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        ],
        "nullable": True,
    },
    conversation_schema.ConversationItems: {
        "type": "array",
        "items": {"type": "object"},
        "maxItems": conversation_schema.MAX_ITEMS,
    },
    conversation_schema.Metadata: {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": conversation_schema.MAX_VALUE},
        "maxProperties": conversation_schema.MAX_METADATA,
    },
}
# The document ------------------------------------------------------------------------------


def build_spec(registry: dict[str, ModelSpec]) -> dict[str, Any]:
    """The OpenAPI document of this front, its model names from ``registry``."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="llm-queue: an OpenAI-compatible API",
        version="1.0.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "Chat, completions, responses, embeddings, rerank and score, served "
            "by Celery workers."
        },
    )
    converter = plugin.converter
    if converter is None:  # APISpec's init sets it up
        raise RuntimeError("the marshmallow plugin was not initialized")
    converter.add_attribute_function(_custom_field)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})

    public = public_names(registry)
    names = {
        kind: sorted(n for n, s in public.items() if s.serves(kind))
        for kind in (CHAT, EMBEDDING, SCORING)
    }
    names[ANY] = sorted(public)
    requests: tuple[tuple[str, type[Schema], str], ...] = (
        ("ChatCompletionRequest", chat_schemas.ChatCompletionSchema, CHAT),
        ("CompletionRequest", schemas.CompletionSchema, CHAT),
        ("EditRequest", chat_schemas.EditSchema, CHAT),
        ("EmbeddingRequest", schemas.EmbeddingSchema, EMBEDDING),
        ("ResponseRequest", response_schema.ResponseCreateSchema, CHAT),
        ("RerankRequest", scoring_schemas.RerankSchema, SCORING),
        ("ScoreRequest", scoring_schemas.ScoreSchema, SCORING),
        ("TokenizeRequest", token_schemas.TokenizeSchema, ANY),
        ("DetokenizeRequest", token_schemas.DetokenizeSchema, ANY),
    )
    modelless: tuple[tuple[str, type[Schema]], ...] = (
        ("ConversationRequest", conversation_schema.ConversationCreateSchema),
        ("ConversationUpdateRequest", conversation_schema.ConversationUpdateSchema),
        ("ConversationItemsRequest", conversation_schema.ItemsCreateSchema),
    )
    for name, schema in modelless:
        spec.components.schema(name, schema=schema)
    for name, schema, kind in requests:
        spec.components.schema(name, schema=schema)
        if names[kind]:  # an enum may not be empty
            spec.components.schemas[name]["properties"]["model"]["enum"] = names[kind]
    for name, component in COMPONENTS.items():
        spec.components.schema(name, schema=component)

    secured: dict[str, Any] = {
        "security": [{"bearer": []}, {}]
    }  # keys are optional: only if API_KEYS is set
    spec.path(
        "/v1/chat/completions",
        operations={
            "post": {
                "summary": "Create a chat completion",
                **generation("ChatCompletionRequest", "ChatCompletion", streams=True),
                **secured,
            }
        },
    )
    spec.path(
        "/v1/completions",
        operations={
            "post": {
                "summary": "Create a completion",
                **generation("CompletionRequest", "Completion", streams=True),
                **secured,
            }
        },
    )
    spec.path(
        "/v1/edits",
        operations={
            "post": {
                "summary": "Create an edit (legacy)",
                **generation("EditRequest", "Edit", streams=False),
                **secured,
            }
        },
    )
    embeddings = generation("EmbeddingRequest", "EmbeddingList", streams=False)
    spec.path(
        "/v1/embeddings",
        operations={"post": {"summary": "Create embeddings", **embeddings, **secured}},
    )
    spec.path(
        "/v1/models",
        operations={
            "get": {
                "summary": "The models with a live worker",
                "responses": {
                    "200": {"description": "The models", "content": json_content("ModelList")},
                    **error_responses(401, 429, 503),
                },
                **secured,
            }
        },
    )
    spec.path(
        "/v1/models/{model}",
        operations={
            "get": {
                "summary": "One model",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The model", "content": json_content("Model")},
                    **error_responses(401, 404, 429, 503),
                },
                **secured,
            }
        },
    )
    responses_paths(spec, secured)
    conversations_paths(spec, secured)
    scoring_paths(spec, secured)
    token_paths(spec, secured)
    adapter_paths(spec, secured)
    for path, summary in (("/health", "The process is up"), ("/ready", "Ready to serve")):
        responses = {"200": {"description": summary, "content": json_content("Health")}}
        if path == "/ready":
            responses["503"] = {
                "description": "Redis or workers missing",
                "content": json_content("Health"),
            }
        spec.path(path, operations={"get": {"summary": summary, "responses": responses}})
    spec.path(
        "/metrics",
        operations={
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    )
    return spec.to_dict()


def _custom_field(self: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
    for cls, schema in CUSTOM_FIELDS.items():
        if isinstance(field, cls):
            return dict(schema)
    return {}


@bp.get("/openapi.json")
def openapijson_content() -> Response:
    return jsonify(services().openapi())
