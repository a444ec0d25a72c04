"""The Conversations API: POST /v1/conversations, GET, POST (metadata) and DELETE
/v1/conversations/<id>, GET and POST /v1/conversations/<id>/items, GET and DELETE
/v1/conversations/<id>/items/<item_id> (see :mod:`app.conversations.service`)."""

from __future__ import annotations

from flask import Response, jsonify, request

from app.api.blueprint import bp, limit_arg, order_arg, request_owner
from app.body import read_json
from app.conversations.schema import (
    ConversationCreateSchema,
    ConversationUpdateSchema,
    ItemsCreateSchema,
)
from app.schemas import load_request
from app.services import services

CREATE = ConversationCreateSchema()
UPDATE = ConversationUpdateSchema()
ADD_ITEMS = ItemsCreateSchema()


@bp.post("/conversations")
def create_conversation() -> Response:
    # Every field is optional: no body at all is an empty conversation.
    body = read_json() if request.get_data(cache=True) else {}
    data = load_request(CREATE, body)
    return jsonify(services().conversations.create(data, request_owner()))


@bp.get("/conversations/<conversation_id>")
def retrieve_conversation(conversation_id: str) -> Response:
    return jsonify(services().conversations.retrieve(conversation_id, request_owner()))


@bp.post("/conversations/<conversation_id>")
def update_conversation(conversation_id: str) -> Response:
    data = load_request(UPDATE, read_json())
    return jsonify(services().conversations.update(conversation_id, request_owner(), data))


@bp.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> Response:
    return jsonify(services().conversations.delete(conversation_id, request_owner()))


@bp.get("/conversations/<conversation_id>/items")
def list_conversation_items(conversation_id: str) -> Response:
    limit, order = limit_arg(20, 100), order_arg()
    page = services().conversations.list_items(
        conversation_id, request_owner(), limit, order, request.args.get("after")
    )
    return jsonify(page)


@bp.post("/conversations/<conversation_id>/items")
def create_conversation_items(conversation_id: str) -> Response:
    data = load_request(ADD_ITEMS, read_json())
    return jsonify(services().conversations.add_items(conversation_id, request_owner(), data))


@bp.get("/conversations/<conversation_id>/items/<item_id>")
def retrieve_conversation_item(conversation_id: str, item_id: str) -> Response:
    return jsonify(services().conversations.item(conversation_id, request_owner(), item_id))


@bp.delete("/conversations/<conversation_id>/items/<item_id>")
def delete_conversation_item(conversation_id: str, item_id: str) -> Response:
    conversation = services().conversations.delete_item(conversation_id, request_owner(), item_id)
    return jsonify(conversation)
