"""The paths of ``/openapi.json`` beyond the generation endpoints (see :mod:`app.openapi`): the
Responses and Conversations APIs, rerank and score, tokenize and detokenize; and the pieces every
path is built of."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

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


# What a request sent to a worker may answer.
STATUSES = (400, 401, 404, 405, 413, 429, 500, 502, 503, 504)


def json_content(schema: str | dict) -> dict:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"application/json": {"schema": ref}}


def error_responses(*statuses: int) -> dict:
    """Error responses: every API path may also answer 400 (bad JSON), 401 and 429 (limits)."""
    described = {
        400: "Invalid request",
        401: "Missing or wrong API key",
        403: "Not an admin key (ADMIN_API_KEYS)",
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
        str(s): {"description": described[s], "content": json_content("ErrorResponse")}
        for s in statuses
    }


def generation(request: str, response: str, streams: bool) -> dict:
    ok: dict[str, Any] = {"description": "The result", "content": json_content(response)}
    if streams:
        ok["content"]["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-Sent Events, ending `[DONE]`"}
        }
    return {
        "requestBody": {"required": True, "content": json_content(request)},
        "responses": {
            "200": ok,
            **error_responses(400, 401, 404, 405, 413, 429, 500, 502, 503, 504),
        },
    }


def responses_paths(spec: APISpec, secured: dict) -> None:
    """The Responses API: its request is validated by its schema, its objects described loosely
    (a response, a list of input items, a deletion)."""
    obj = {"description": "The object", "content": json_content({"type": "object"})}
    response_id = [
        {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    create = generation("ResponseRequest", "ChatCompletion", streams=True)
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
        responses = {"200": obj, **error_responses(*errors)}
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


def conversations_paths(spec: APISpec, secured: dict) -> None:
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
        done = {"description": "The result", "content": json_content(answer)}
        found = {"200": done, **error_responses(400, 401, 404, 413, 429, 503)}
        described: dict[str, Any] = {"summary": summary, "responses": found, **secured}
        if parameters:
            described["parameters"] = parameters
        if request:
            described["requestBody"] = {"required": True, "content": json_content(request)}
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


def scoring_paths(spec: APISpec, secured: dict) -> None:
    """Rerank and score (at vLLM's paths too): requests validated by their schemas, answers
    described."""
    for paths, summary, request, answer in (
        (
            ("/v1/rerank", "/rerank", "/v2/rerank"),
            "Documents by relevance to a query",
            "RerankRequest",
            "RerankResponse",
        ),
        (
            ("/v1/score", "/score"),
            "A relevance score per pair of texts",
            "ScoreRequest",
            "ScoreResponse",
        ),
    ):
        operation = generation(request, answer, streams=False)
        for path in paths:
            spec.path(path, operations={"post": {"summary": summary, **operation, **secured}})


def token_paths(spec: APISpec, secured: dict) -> None:
    """Tokenize and detokenize, at vLLM's paths and under /v1."""
    for name, summary in (
        ("tokenize", "A prompt or a chat as the model's token ids"),
        ("detokenize", "Token ids as text"),
    ):
        title = name.capitalize()
        operation = generation(f"{title}Request", f"{title}Response", streams=False)
        for path in (f"/{name}", f"/v1/{name}"):
            spec.path(path, operations={"post": {"summary": summary, **operation, **secured}})


def adapter_paths(spec: APISpec, secured: dict) -> None:
    """Loading and unloading LoRA adapters at run time (vLLM's paths), with an admin key."""
    name = {"type": "string", "description": "The adapter's model name"}
    bodies = {
        "load_lora_adapter": {
            "type": "object",
            "properties": {
                "lora_name": name,
                "lora_path": {"type": "string", "description": "A directory PEFT saved"},
                "base_model_name": {"type": "string", "nullable": True},
            },
            "required": ["lora_name", "lora_path"],
        },
        "unload_lora_adapter": {
            "type": "object",
            "properties": {"lora_name": name},
            "required": ["lora_name"],
        },
    }
    for path, body in bodies.items():
        operation = {
            "summary": path.replace("_", " ").capitalize() + " (admin key)",
            "requestBody": {"required": True, "content": json_content(body)},
            "responses": {
                "200": {
                    "description": "Done, in vLLM's words",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **error_responses(400, 401, 403, 404, 413, 429, 503, 504),
            },
            **secured,
        }
        spec.path(f"/v1/{path}", operations={"post": operation})
