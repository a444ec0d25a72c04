import pytest

from workers.engine.text import TextStream


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def stream_text(tokenizer, text, stop=()):
    stream = TextStream(tokenizer, tuple(stop))
    pieces = [stream.push(t) for t in tokenizer(text)["input_ids"]]
    return pieces, stream


def test_pieces_add_up_to_the_text_even_with_multibyte_characters(tokenizer):
    text = "Hello world! ünïcode 😀 done"
    pieces, stream = stream_text(tokenizer, text)
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces)  # never half a character


def test_stop_string_spanning_tokens_is_cut_and_never_emitted(tokenizer):
    text = "Once upon a time there was a queue"
    pieces, stream = stream_text(tokenizer, text, stop=["time there"])
    assert stream.stopped
    assert "".join(pieces) == "Once upon a "
    assert stream.flush() == ""


def test_text_that_only_looked_like_a_stop_is_released(tokenizer):
    pieces, stream = stream_text(tokenizer, "the quick brown fox", stop=["the lazy"])
    assert not stream.stopped
    assert "".join(pieces) + stream.flush() == "the quick brown fox"


def test_partial_stop_at_the_end_is_held_until_flush(tokenizer):
    pieces, stream = stream_text(tokenizer, "jobs to busy", stop=["busy workers"])
    assert "".join(pieces) == "jobs to "
    assert stream.flush() == "busy"
