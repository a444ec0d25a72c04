"""A sequence's n-grams, for prompt-lookup drafts (see :mod:`workers.engine.speculation`)."""

from __future__ import annotations

NGRAMS = (3, 2)  # lengths of the suffix looked up, longest first
MAX_WAIT = 8  # steps without drafts, at most, after drafts that failed in a row


class Drafter:
    """Where each n-gram of a sequence's tokens last occurred (the token after it), kept up to
    date token by token: a lookup is a dictionary read, not a search of a long prompt.

    A draft the model rejects whole cost a pass of several tokens for one: after such a pass
    the drafter waits 1 step before drafting again, then 2, 4, ... up to ``MAX_WAIT`` while
    drafts keep failing (free text, sampled, rarely repeats its context), and drafts every
    step again once one is taken in part."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token after it
        self.wait = 0  # steps to let pass before the next draft
        self.backoff = 0
        self.extend(tokens)

    def taken(self, accepted: int) -> None:
        """How many tokens of the last draft the model took."""
        if accepted:
            self.backoff = 0
        else:
            self.backoff = min(MAX_WAIT, max(1, 2 * self.backoff))
            self.wait = self.backoff

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            # Index the n-grams that end just before this token: each is now followed by it.
            for n in NGRAMS:
                if end - 1 >= n:
                    self.after[tuple(self.tokens[end - 1 - n : end - 1])] = end - 1

    def draft(self, size: int) -> list[int]:
        """Up to ``size`` tokens that followed the latest earlier occurrence of the sequence's
        last n tokens; [] if none occurred before (or while waiting after failed drafts)."""
        if self.wait:
            self.wait -= 1
            return []
        for n in NGRAMS:
            if len(self.tokens) <= n:
                continue
            start = self.after.get(tuple(self.tokens[-n:]))
            if start is not None:
                return self.tokens[start : start + size]
        return []
