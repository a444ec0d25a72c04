from types import SimpleNamespace

import pytest

from workers.engine.text import TextStream, TokenBytes


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


def test_token_bytes_rebuild_characters_that_tokens_split(tokenizer):
    text = "café ☕ 日本"
    ids = tokenizer(text)["input_ids"]
    to_bytes = TokenBytes(tokenizer)
    assert any(tokenizer.decode([i]) == "\ufffd" for i in ids)  # lone bytes of a character
    assert b"".join(bytes(to_bytes(i)) for i in ids) == text.encode()


def test_token_bytes_of_sentencepiece_byte_fallback_and_plain_pieces():
    pieces = {0: "<0xE2>", 1: "▁Hello"}
    sentencepiece = SimpleNamespace(  # no byte-level decoder: pieces as SentencePiece writes them
        convert_ids_to_tokens=pieces.get,
        decode=lambda ids: {0: "\ufffd", 1: " Hello"}[ids[0]],
    )
    to_bytes = TokenBytes(sentencepiece)
    assert to_bytes(0) == [0xE2]
    assert to_bytes(1) == list(b" Hello")
