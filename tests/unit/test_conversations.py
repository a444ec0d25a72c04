"""The Conversations API's pure parts: its request schemas, the items it stores, the conversation
rules of a response request, and what a finished response adds to its conversation."""

import pytest

from app.conversations.items import completed, conversation_object, list_page, new_items
from app.conversations.schema import (
    ConversationCreateSchema,
    ConversationUpdateSchema,
    ItemsCreateSchema,
)
from app.errors import APIError
from app.responses.schema import ResponseCreateSchema
from app.responses.service import ResponseService
from app.schemas import load_request
from config.results import empty_result


def refused(schema, body):
    with pytest.raises(APIError) as error:
        load_request(schema, body)
    assert error.value.status == 400
    return error.value.body["error"]["param"]


def test_a_conversation_loads_its_items_and_metadata():
    data = load_request(
        ConversationCreateSchema(),
        {"items": [{"role": "user", "content": "Hi"}], "metadata": {"topic": "demo"}},
    )
    assert data["metadata"] == {"topic": "demo"}
    assert data["items"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    ]
    assert load_request(ConversationCreateSchema(), {}) == {}


@pytest.mark.parametrize(
    ("schema", "body", "param"),
    [
        (ConversationCreateSchema(), {"items": "Hi"}, "items"),
        (ConversationCreateSchema(), {"items": [{"role": "user"}] * 21}, "items"),
        (ConversationCreateSchema(), {"items": [{"role": "robot", "content": "x"}]}, "items"),
        (ConversationCreateSchema(), {"items": [{"type": "image"}]}, "items"),
        (ConversationCreateSchema(), {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        (ConversationCreateSchema(), {"metadata": {"k" * 65: "v"}}, "metadata"),
        (ConversationCreateSchema(), {"metadata": {"k": "v" * 513}}, "metadata"),
        (ConversationCreateSchema(), {"metadata": {"k": 1}}, "metadata"),
        (ConversationCreateSchema(), {"metadata": ["k"]}, "metadata"),
        (ConversationUpdateSchema(), {}, "metadata"),
        (ItemsCreateSchema(), {}, "items"),
        (ItemsCreateSchema(), {"items": []}, "items"),
    ],
)
def test_bad_bodies_are_400s_naming_their_parameter(schema, body, param):
    assert refused(schema, body) == param


def test_metadata_may_be_cleared():
    assert load_request(ConversationUpdateSchema(), {"metadata": None}) == {"metadata": None}


def test_stored_items_get_ids_and_a_status():
    loaded = load_request(
        ItemsCreateSchema(),
        {
            "items": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
            ]
        },
    )["items"]
    items = new_items(loaded)
    assert [i["id"].split("_")[0] for i in items] == ["msg", "msg", "fc", "fco"]
    assert len({i["id"] for i in items}) == 4
    assert {i["status"] for i in items} == {"completed"}
    assert items[1]["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert completed({**items[0], "status": "incomplete"})["status"] == "incomplete"
    page = list_page(items)
    assert (page["first_id"], page["last_id"], page["has_more"]) == (
        items[0]["id"],
        items[-1]["id"],
        False,
    )


def test_the_conversation_object_shows_no_owner():
    record = {"id": "conv_1", "owner": "secret", "created_at": 5, "metadata": {}}
    assert conversation_object(record) == {
        "id": "conv_1",
        "object": "conversation",
        "created_at": 5,
        "metadata": {},
    }


def test_a_response_names_its_conversation_by_id_or_object():
    load = load_request
    schema = ResponseCreateSchema()
    body = {"model": "m", "input": "Hi"}
    assert load(schema, {**body, "conversation": "conv_1"})["conversation"] == "conv_1"
    assert load(schema, {**body, "conversation": {"id": "conv_1"}})["conversation"] == "conv_1"
    for bad in (
        {"conversation": ""},
        {"conversation": {"name": "x"}},
        {"conversation": 3},
        {"conversation": "conv_1", "previous_response_id": "resp_1"},
        {"conversation": "conv_1", "background": True},
    ):
        assert refused(schema, {**body, **bad}) == "conversation"


class Appended:
    """A conversation store that only records what is appended."""

    def __init__(self):
        self.added = []

    def append(self, conversation_id, items):
        self.added.append((conversation_id, items))


def finished_result(text):
    result = empty_result("completed", None)
    choice = {"index": 0, "text": text, "finish_reason": "length", "tool_calls": []}
    return {**result, "choices": [choice]}


def test_a_finished_response_adds_its_input_then_its_output():
    store = Appended()
    service = ResponseService(None, None, None, 100, conversations=store)
    record = {
        "id": "resp_abc",
        "request": {"conversation": "conv_1"},
        "input_items": [
            {
                "id": "msg_abc_in0",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            }
        ],
    }
    service._extend_conversation(record, finished_result("Hello"))
    [(conversation_id, items)] = store.added
    assert conversation_id == "conv_1"
    assert [(i["id"], i["role"], i["status"]) for i in items] == [
        ("msg_abc_in0", "user", "completed"),
        ("msg_abc", "assistant", "incomplete"),  # cut by max_output_tokens
    ]
    service._extend_conversation(record, empty_result("failed", None))
    service._extend_conversation({**record, "request": {}}, finished_result("Hello"))
    assert len(store.added) == 1  # a failed response, or one in no conversation, adds nothing
