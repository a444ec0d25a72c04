import pytest

from config.protocol import (
    EventGap,
    EventOrder,
    EventSequence,
    cancel_key,
    decode,
    encode,
    events_channel,
    finished_key,
)


def test_events_are_numbered_from_zero_and_carry_the_job():
    seq = EventSequence("job1")
    first, second = seq.make("token", text="a"), seq.make("done", usage={})
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
    event = EventSequence("j").make("token", text="héllo", token_ids=[1, 2])
    assert decode(encode(event)) == event
    assert decode(encode(event).encode()) == event
