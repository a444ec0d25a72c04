import pytest

from config.events import EventGap, EventOrder, EventSequence, event_from_wire
from config.keys import cancel_key, events_channel, finished_key
from config.protocol import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    ERROR,
    MalformedMessage,
    chat_job,
    completion_job,
    decode,
    embedding_job,
    encode,
    job_from_wire,
    next_attempt,
    origin,
)


def test_events_are_numbered_from_zero_and_carry_the_job():
    seq = EventSequence("job1")
    fields = {"index": 0, "text": "a", "token_ids": [1], "finish_reason": None}
    first = seq.token(fields)
    second = seq.done({"prompt_tokens": 1, "total_tokens": 2})
    assert (first["job"], first["seq"], first["type"], first["text"]) == ("job1", 0, "token", "a")
    assert second["seq"] == 1


def test_order_accepts_in_sequence_drops_duplicates_and_raises_on_gaps():
    order = EventOrder()
    assert order.accept({"seq": 0})
    assert not order.accept({"seq": 0})  # a duplicate never reaches the client twice
    assert order.accept({"seq": 1})
    with pytest.raises(EventGap):
        order.accept({"seq": 3})


def test_event_without_sequence_number_is_rejected():
    with pytest.raises(EventGap):
        EventOrder().accept({"type": "token"})


def test_names_are_per_job_and_distinct():
    names = {events_channel("a"), cancel_key("a"), finished_key("a"), events_channel("b")}
    assert len(names) == 4


def test_encoding_round_trips_json():
    fields = {"index": 0, "text": "héllo", "token_ids": [1, 2], "finish_reason": "stop"}
    event = EventSequence("j").token(fields)
    assert decode(encode(event)) == event
    assert decode(encode(event).encode()) == event


def test_each_job_kind_has_a_constructor_that_makes_a_whole_job():
    chat = chat_job("m", [{"role": "user", "content": "hi"}], {"n": 2}, user="u")
    completion = completion_job("m", ["a", [1, 2]], {"max_tokens": 3})
    embedding = embedding_job("e", ["x"], max_request_tokens=10)
    assert (chat["kind"], completion["kind"], embedding["kind"]) == (CHAT, COMPLETION, EMBEDDING)
    assert chat["user"] == "u" and embedding["max_request_tokens"] == 10
    assert len({chat["id"], completion["id"], embedding["id"]}) == 3
    assert job_from_wire(decode(encode(chat))) == chat


def test_a_job_run_again_is_a_new_attempt_of_the_same_request():
    first = completion_job("m", ["a"], {})
    second = next_attempt(first)
    third = next_attempt(second)
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert origin(first) == origin(second) == origin(third) == first["id"]


@pytest.mark.parametrize(
    "message",
    [None, [], {"id": "j", "model": "m"}, {"id": 1, "model": "m", "kind": "chat"}, "job"],
)
def test_what_is_not_a_job_is_refused_at_the_boundary(message):
    with pytest.raises(MalformedMessage):
        job_from_wire(message)


def test_an_error_event_names_the_job_field_and_its_details():
    event = EventSequence("j").error("context_length_exceeded", "Too long.", "prompts[1]", {"n": 3})
    assert (event["field"], event["details"], event["type"]) == ("prompts[1]", {"n": 3}, ERROR)
    assert event_from_wire(encode(event)) == event
    with pytest.raises(MalformedMessage):
        event_from_wire(encode({"type": "nonsense", "job": "j"}))
