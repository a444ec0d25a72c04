"""The Conversations API through the openai SDK: conversations and their items (create,
retrieve, update, list and page, delete), responses that read and extend a conversation over
three turns (plain, by an ``{"id"}`` object, streamed), owners, and bad requests."""

import openai
import pytest

from tests.integration.conftest import TINY
from tests.integration.http import get, post

pytestmark = pytest.mark.usefixtures("tiny_worker")


def user(text):
    return {"type": "message", "role": "user", "content": text}


def texts(items):
    return [item.content[0].text for item in items]


def test_create_retrieve_update_delete(openai_client):
    conv = openai_client.conversations.create(items=[user("Hi")], metadata={"topic": "demo"})
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "demo"} and conv.created_at > 0
    again = openai_client.conversations.retrieve(conv.id)
    assert (again.id, again.created_at, again.metadata) == (conv.id, conv.created_at, conv.metadata)
    updated = openai_client.conversations.update(conv.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}
    assert openai_client.conversations.retrieve(conv.id).metadata == {"topic": "other"}
    deleted = openai_client.conversations.delete(conv.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conv.id, "conversation.deleted", True)
    for gone in (
        lambda: openai_client.conversations.retrieve(conv.id),
        lambda: openai_client.conversations.items.list(conv.id),
        lambda: openai_client.conversations.delete(conv.id),
    ):
        with pytest.raises(openai.NotFoundError):
            gone()


def test_an_empty_conversation(openai_client):
    conv = openai_client.conversations.create()
    assert conv.metadata == {}
    page = openai_client.conversations.items.list(conv.id)
    assert page.data == [] and not page.has_more


def test_items_are_added_listed_paged_retrieved_and_deleted(openai_client):
    conv = openai_client.conversations.create(items=[user("one")])
    added = openai_client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "assistant", "content": "two"},
            user([{"type": "input_text", "text": "three"}]),
        ],
    )
    assert added.object == "list" and texts(added.data) == ["two", "three"]
    assert all(i.id.startswith("msg_") and i.status == "completed" for i in added.data)
    assert [i.role for i in added.data] == ["assistant", "user"]
    assert added.data[0].content[0].type == "output_text"

    newest = openai_client.conversations.items.list(conv.id)  # desc by default
    assert texts(newest.data) == ["three", "two", "one"]
    first = openai_client.conversations.items.list(conv.id, limit=2, order="asc")
    assert texts(first.data) == ["one", "two"] and first.has_more
    rest = openai_client.conversations.items.list(
        conv.id, limit=2, order="asc", after=first.last_id
    )
    assert texts(rest.data) == ["three"] and not rest.has_more
    everything = list(openai_client.conversations.items.list(conv.id, limit=1, order="asc"))
    assert texts(everything) == ["one", "two", "three"]  # the SDK's pages, one item each

    two = added.data[0]
    item = openai_client.conversations.items.retrieve(two.id, conversation_id=conv.id)
    assert (item.id, item.type, item.role, texts([item])) == (
        two.id,
        "message",
        "assistant",
        ["two"],
    )
    left = openai_client.conversations.items.delete(two.id, conversation_id=conv.id)
    assert (left.id, left.object) == (conv.id, "conversation")
    with pytest.raises(openai.NotFoundError):
        openai_client.conversations.items.retrieve(two.id, conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.conversations.items.delete(two.id, conversation_id=conv.id)
    assert texts(openai_client.conversations.items.list(conv.id, order="asc").data) == [
        "one",
        "three",
    ]


def test_three_turns_of_responses_grow_the_conversation(openai_client):
    conv = openai_client.conversations.create(metadata={"kind": "chat"})
    ask = {"model": TINY, "max_output_tokens": 3, "temperature": 0}
    first = openai_client.responses.create(conversation=conv.id, input="Turn one", **ask)
    second = openai_client.responses.create(
        conversation={"id": conv.id}, input=[user("Turn two")], **ask
    )
    events = list(
        openai_client.responses.create(conversation=conv.id, input="Turn three", stream=True, **ask)
    )
    third = events[-1].response
    responses = [first, second, third]
    assert all(r.conversation.id == conv.id for r in responses)
    assert all(r.output_text for r in responses)
    # Each turn reads the turns before it: its prompt is longer than the one before.
    inputs = [r.usage.input_tokens for r in responses]
    assert inputs[0] < inputs[1] < inputs[2]

    items = openai_client.conversations.items.list(conv.id, order="asc", limit=100)
    assert len(items.data) == 6 and not items.has_more
    assert [i.role for i in items.data] == ["user", "assistant"] * 3
    assert texts(items.data[0::2]) == ["Turn one", "Turn two", "Turn three"]
    assert texts(items.data[1::2]) == [r.output_text for r in responses]
    # The assistant's items are the responses' output items, cut by max_output_tokens.
    assert [i.id for i in items.data[1::2]] == [r.output[0].id for r in responses]
    assert {i.status for i in items.data[1::2]} == {"incomplete"}
    assert {i.status for i in items.data[0::2]} == {"completed"}


def test_a_response_continues_the_items_a_conversation_started_with(openai_client):
    conv = openai_client.conversations.create(items=[user("Remember: Paris.")])
    alone = openai_client.responses.create(model=TINY, input="Where?", max_output_tokens=1)
    # Greedy: a sampled first token may decode to nothing, and add no item.
    within = openai_client.responses.create(
        model=TINY, conversation=conv.id, input="Where?", max_output_tokens=1, temperature=0
    )
    assert within.usage.input_tokens > alone.usage.input_tokens
    assert alone.conversation is None
    items = openai_client.conversations.items.list(conv.id, order="asc")
    assert texts(items.data[:2]) == ["Remember: Paris.", "Where?"] and len(items.data) == 3


def test_a_deleted_conversation_is_continued_by_no_response(openai_client):
    conv = openai_client.conversations.create()
    openai_client.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError) as error:
        openai_client.responses.create(model=TINY, conversation=conv.id, input="x")
    assert error.value.body["param"] == "conversation"


def test_a_response_in_a_conversation_is_continued_by_the_conversation(openai_client):
    conv = openai_client.conversations.create()
    first = openai_client.responses.create(
        model=TINY, conversation=conv.id, input="Hi", max_output_tokens=2
    )
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.responses.create(model=TINY, previous_response_id=first.id, input="And?")
    assert error.value.body["param"] == "previous_response_id"
    assert "conversation" in error.value.body["message"]


@pytest.fixture(scope="module")
def keyed_front(stack):
    return stack.front(API_KEYS="key-one,key-two")


def test_a_conversation_belongs_to_the_key_that_made_it(keyed_front):
    one = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-one", max_retries=0)
    two = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-two", max_retries=0)
    mine = one.conversations.create(items=[user("Hi")])
    item = one.conversations.items.list(mine.id).data[0]
    for attempt in (
        lambda: two.conversations.retrieve(mine.id),
        lambda: two.conversations.update(mine.id, metadata={"x": "y"}),
        lambda: two.conversations.delete(mine.id),
        lambda: two.conversations.items.list(mine.id),
        lambda: two.conversations.items.create(mine.id, items=[user("x")]),
        lambda: two.conversations.items.retrieve(item.id, conversation_id=mine.id),
        lambda: two.conversations.items.delete(item.id, conversation_id=mine.id),
        lambda: two.responses.create(model=TINY, conversation=mine.id, input="x"),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert one.conversations.retrieve(mine.id).metadata == {}  # not changed by the other key
    assert [i.id for i in one.conversations.items.list(mine.id).data] == [item.id]
    answered = one.responses.create(
        model=TINY, conversation=mine.id, input="Hello", max_output_tokens=1, temperature=0
    )
    assert answered.conversation.id == mine.id
    assert len(one.conversations.items.list(mine.id).data) == 3


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/conversations", {"items": [user("x")] * 21}, "items"),
        ("/v1/conversations", {"items": "Hi"}, "items"),
        ("/v1/conversations", {"items": [{"role": "robot", "content": "x"}]}, "items"),
        ("/v1/conversations", {"items": [{"type": "web_search_call"}]}, "items"),
        ("/v1/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("/v1/conversations", {"metadata": {"k": 1}}, "metadata"),
        ("/v1/conversations", {"metadata": "topic"}, "metadata"),
        ("/{conv}", {}, "metadata"),
        ("/{conv}", {"metadata": {"k": "v" * 513}}, "metadata"),
        ("/{conv}/items", {"items": []}, "items"),
        ("/{conv}/items", {}, "items"),
        (
            "/v1/responses",
            {"conversation": "{conv}", "previous_response_id": "resp_x"},
            "conversation",
        ),
        ("/v1/responses", {"conversation": "{conv}", "background": True}, "conversation"),
        ("/v1/responses", {"conversation": {"name": "x"}}, "conversation"),
        ("/v1/responses", {"conversation": 7}, "conversation"),
    ],
)
def test_bad_requests_are_400s_naming_their_parameter(front, openai_client, path, body, param):
    conv = openai_client.conversations.create().id
    if path.startswith("/{conv}"):
        path = "/v1/conversations/" + path.format(conv=conv)[1:]
    if path == "/v1/responses":
        body = {"model": TINY, "input": "x", **body}
        if body["conversation"] == "{conv}":
            body["conversation"] = conv
    status, _, answer = post(front, path, body)
    assert status == 400, answer
    assert answer["error"]["param"] == param and answer["error"]["type"] == "invalid_request_error"


def test_bad_bodies_and_list_arguments_are_400s(front, openai_client):
    conv = openai_client.conversations.create(items=[user("Hi")]).id
    for raw in (b"{", b"[]", b"null"):
        assert post(front, "/v1/conversations", None, raw=raw)[0] == 400
    assert post(front, f"/v1/conversations/{conv}/items", None, raw=b"nope")[0] == 400
    for query, param in (
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("limit=%C2%B2", "limit"),  # "²", a digit to str.isdigit, not to int()
        ("order=sideways", "order"),
        ("after=msg_unknown", "after"),
    ):
        status, _, answer = get(front, f"/v1/conversations/{conv}/items?{query}")
        assert status == 400 and answer["error"]["param"] == param, (query, answer)
    assert get(front, f"/v1/conversations/{conv}/items/msg_unknown")[0] == 404
    assert get(front, "/v1/conversations/conv_unknown/items")[0] == 404
