"""Incremental detokenization with stop strings.

Decoding token by token breaks multi-byte characters and word-joining spaces, so each step decodes
a short window of recent tokens and emits only the text that became final. Text that could be the
beginning of a stop string is held back until it is known not to be one, so a stop string never
reaches the client, even when it spans tokens.
"""

from __future__ import annotations

from typing import Any


class TextStream:
    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._pending = ""  # decoded text not yet emitted
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that can be emitted now."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        self._pending += self._decode_new()
        return self._release()

    def flush(self) -> str:
        """At the end of the sequence, release whatever is still held back, including the
        bytes of an unfinished character (decoded as U+FFFD, as vLLM does)."""
        if self.stopped:
            return ""
        decode = self._tokenizer.decode
        before = decode(
            self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True
        )
        after: str = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        self._prefix_offset = self._read_offset = len(self._ids)
        text, self._pending = self._pending + after[len(before) :], ""
        return text

    def _decode_new(self) -> str:
        decode = self._tokenizer.decode
        before = decode(
            self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True
        )
        after: str = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        # An incomplete UTF-8 sequence decodes to U+FFFD: wait for the rest of the character.
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return after[len(before) :]

    def _release(self) -> str:
        if not self._stop:
            text, self._pending = self._pending, ""
            return text
        hits = [i for i in (self._pending.find(s) for s in self._stop) if i >= 0]
        if hits:
            self.stopped = True
            text, self._pending = self._pending[: min(hits)], ""
            return text
        hold = _longest_stop_prefix_suffix(self._pending, self._stop)
        cut = len(self._pending) - hold
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return text


def _longest_stop_prefix_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class TokenBytes:
    """The raw bytes of one token, as OpenAI's logprobs ``bytes`` give them: a token holding part
    of a multi-byte character decodes to U+FFFD alone, but its bytes joined with its neighbours'
    rebuild the character.

    Byte-level BPE pieces (GPT-2, Llama 3, SmolLM2) map one character to one byte; SentencePiece
    byte-fallback pieces are written ``<0xNN>``; any other piece is the UTF-8 of its text.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._byte_of: dict[str, int] | None = None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and type(backend.decoder).__name__ == "ByteLevel":
            from transformers.convert_slow_tokenizer import bytes_to_unicode

            # transformers leaves bytes_to_unicode unannotated.
            self._byte_of = {char: byte for byte, char in bytes_to_unicode().items()}  # type: ignore[no-untyped-call]

    def __call__(self, token_id: int) -> list[int]:
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        if self._byte_of is not None and piece and all(c in self._byte_of for c in piece):
            return [self._byte_of[c] for c in piece]
        if len(piece or "") == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return [int(piece[3:5], 16)]
        return list(self._tokenizer.decode([token_id]).encode())
