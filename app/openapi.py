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

from app import chat_schemas, schemas
from app.conversations import schema as conversation_schema
from app.openapi_responses import COMPONENTS
from app.responses import schema as response_schema
from app.services import services
from config.registry import CHAT, EMBEDDING, ModelSpec, public_names

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.0.3"
STRINGS = {"type": "array", "items": {"type": "string"}}
TOKENS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
TEXT_PART = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    "required": ["type", "text"],
}
# The custom request fields, which marshmallow alone cannot describe.
CUSTOM_FIELDS: dict[type[fields.Field], dict[str, Any]] = {
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
CONVERSATION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["conversation"]},
        "created_at": {"type": "integer"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["id", "object", "created_at", "metadata"],
}
ITEM_LIST = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": {"type": "object"}},
        "first_id": {"type": "string", "nullable": True},
        "last_id": {"type": "string", "nullable": True},
        "has_more": {"type": "boolean"},
    },
    "required": ["object", "data", "first_id", "last_id", "has_more"],
}


# The document ------------------------------------------------------------------------------


def _json(schema: str | dict) -> dict:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"application/json": {"schema": ref}}


def _errors(*statuses: int) -> dict:
    """Error responses: every API path may also answer 400 (bad JSON), 401 and 429 (limits)."""
    described = {
        400: "Invalid request",
        401: "Missing or wrong API key",
        404: "Unknown model",
        405: "Method not allowed",
        413: "Request body too large",
        429: "Queue full or rate limit exceeded",
        500: "The model or its worker failed on this request",
        502: "Events from the worker were lost",
        503: "No live worker for the model, or Redis unavailable",
        504: "The worker went silent, or no worker took the job in time",
    }
    return {
        str(s): {"description": described[s], "content": _json("ErrorResponse")} for s in statuses
    }


def _generation(request: str, response: str, streams: bool) -> dict:
    ok: dict[str, Any] = {"description": "The result", "content": _json(response)}
    if streams:
        ok["content"]["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-Sent Events, ending `[DONE]`"}
        }
    return {
        "requestBody": {"required": True, "content": _json(request)},
        "responses": {"200": ok, **_errors(400, 401, 404, 405, 413, 429, 500, 502, 503, 504)},
    }


def build_spec(registry: dict[str, ModelSpec]) -> dict[str, Any]:
    """The OpenAPI document of this front, its model names from ``registry``."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="llm-queue: an OpenAI-compatible API",
        version="1.0.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "Chat, completions, edits and embeddings served by Celery workers."},
    )
    converter = plugin.converter
    if converter is None:  # APISpec's init sets it up
        raise RuntimeError("the marshmallow plugin was not initialized")
    converter.add_attribute_function(_custom_field)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})

    public = public_names(registry)
    names = {
        kind: sorted(n for n, s in public.items() if s.serves(kind)) for kind in (CHAT, EMBEDDING)
    }
    requests: tuple[tuple[str, type[Schema]], ...] = (
        ("ChatCompletionRequest", chat_schemas.ChatCompletionSchema),
        ("CompletionRequest", schemas.CompletionSchema),
        ("EditRequest", chat_schemas.EditSchema),
        ("EmbeddingRequest", schemas.EmbeddingSchema),
        ("ResponseRequest", response_schema.ResponseCreateSchema),
    )
    modelless: tuple[tuple[str, type[Schema]], ...] = (
        ("ConversationRequest", conversation_schema.ConversationCreateSchema),
        ("ConversationUpdateRequest", conversation_schema.ConversationUpdateSchema),
        ("ConversationItemsRequest", conversation_schema.ItemsCreateSchema),
    )
    for name, schema in modelless:
        spec.components.schema(name, schema=schema)
    for name, schema in requests:
        spec.components.schema(name, schema=schema)
        kind = EMBEDDING if schema is schemas.EmbeddingSchema else CHAT
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
                **_generation("ChatCompletionRequest", "ChatCompletion", streams=True),
                **secured,
            }
        },
    )
    spec.path(
        "/v1/completions",
        operations={
            "post": {
                "summary": "Create a completion",
                **_generation("CompletionRequest", "Completion", streams=True),
                **secured,
            }
        },
    )
    spec.path(
        "/v1/edits",
        operations={
            "post": {
                "summary": "Create an edit (legacy)",
                **_generation("EditRequest", "Edit", streams=False),
                **secured,
            }
        },
    )
    embeddings = _generation("EmbeddingRequest", "EmbeddingList", streams=False)
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
                    "200": {"description": "The models", "content": _json("ModelList")},
                    **_errors(401, 429, 503),
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
                    "200": {"description": "The model", "content": _json("Model")},
                    **_errors(401, 404, 429, 503),
                },
                **secured,
            }
        },
    )
    _responses_paths(spec, secured)
    _conversations_paths(spec, secured)
    for path, summary in (("/health", "The process is up"), ("/ready", "Ready to serve")):
        responses = {"200": {"description": summary, "content": _json("Health")}}
        if path == "/ready":
            responses["503"] = {
                "description": "Redis or workers missing",
                "content": _json("Health"),
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


def _responses_paths(spec: APISpec, secured: dict) -> None:
    """The Responses API: its request is validated by its schema, its objects described loosely
    (a response, a list of input items, a deletion)."""
    obj = {"description": "The object", "content": _json({"type": "object"})}
    response_id = [
        {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    create = _generation("ResponseRequest", "ChatCompletion", streams=True)
    create["responses"]["200"] = {
        "description": "The response, or its events",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            # Each event's data: a typed event object.
            "text/event-stream": {"schema": {"type": "object"}},
        },
    }
    spec.path(
        "/v1/responses", operations={"post": {"summary": "Create a response", **create, **secured}}
    )

    def operation(summary: str, *errors: int) -> dict:
        responses = {"200": obj, **_errors(*errors)}
        return {"summary": summary, "responses": responses, "parameters": response_id, **secured}

    spec.path(
        "/v1/responses/{response_id}",
        operations={
            "get": operation("A stored response", 401, 404, 429, 503),
            "delete": operation("Delete a stored response", 401, 404, 429, 503),
        },
    )
    spec.path(
        "/v1/responses/{response_id}/cancel",
        operations={"post": operation("Cancel a background response", 400, 401, 404, 429, 503)},
    )
    spec.path(
        "/v1/responses/{response_id}/input_items",
        operations={"get": operation("A response's input items", 400, 401, 404, 429, 503)},
    )


def _conversations_paths(spec: APISpec, secured: dict) -> None:
    """The Conversations API: its requests validated by their schemas, a conversation and a list
    of items described, an item loosely."""
    ids = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("conversation_id", "item_id")
    ]
    paging = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "after", "in": "query", "schema": {"type": "string"}},
    ]

    def operation(
        summary: str, answer: dict, request: str | None = None, parameters: list | None = None
    ) -> dict:
        done = {"description": "The result", "content": _json(answer)}
        found = {"200": done, **_errors(400, 401, 404, 413, 429, 503)}
        described: dict[str, Any] = {"summary": summary, "responses": found, **secured}
        if parameters:
            described["parameters"] = parameters
        if request:
            described["requestBody"] = {"required": True, "content": _json(request)}
        return described

    create = operation("Create a conversation", CONVERSATION, "ConversationRequest")
    create["requestBody"]["required"] = False  # no body: an empty conversation
    spec.path("/v1/conversations", operations={"post": create})
    deleted = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["conversation.deleted"]},
            "deleted": {"type": "boolean"},
        },
        "required": ["id", "object", "deleted"],
    }
    one = ids[:1]
    spec.path(
        "/v1/conversations/{conversation_id}",
        operations={
            "get": operation("A conversation", CONVERSATION, parameters=one),
            "post": operation(
                "Update a conversation's metadata",
                CONVERSATION,
                "ConversationUpdateRequest",
                parameters=one,
            ),
            "delete": operation("Delete a conversation", deleted, parameters=one),
        },
    )
    spec.path(
        "/v1/conversations/{conversation_id}/items",
        operations={
            "get": operation("A conversation's items", ITEM_LIST, parameters=one + paging),
            "post": operation(
                "Add items to a conversation", ITEM_LIST, "ConversationItemsRequest", one
            ),
        },
    )
    item = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    spec.path(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        operations={
            "get": operation("An item of a conversation", item, parameters=ids),
            "delete": operation(
                "Delete an item of a conversation (answers the conversation)",
                CONVERSATION,
                parameters=ids,
            ),
        },
    )


def _custom_field(self: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
    for cls, schema in CUSTOM_FIELDS.items():
        if isinstance(field, cls):
            return dict(schema)
    return {}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(services().openapi())
