"""Reasoning output: a thinking model's thoughts split from its answer as the reply streams.

Models such as Qwen3 and the DeepSeek-R1 distills think between ``<think>`` and ``</think>``
before they answer. Their chat template may open the tag itself (the reply then starts inside
the thinking), or the model writes it first. The registry's ``reasoning_format`` says which tags
a model uses (:data:`REASONING_TAGS`); a chat job's reply then goes through a
:class:`ReasoningParser`, whose thinking reaches the client as ``reasoning`` and whose answer
alone as text: the tags never do.

Tools and structured outputs apply to the answer: a sequence's grammar waits while it thinks
(see :attr:`ReasoningParser.answering`). Under a grammar, the reply's first token may still open
the thinking when the start tag is one token (:attr:`ReasoningParser.opening`), and the end
tag's token, when it is one, starts the grammar (:attr:`ReasoningParser.closing`).

A reply with a thinking budget (the request's ``thinking_token_budget`` or ``reasoning_effort``)
that has thought that many tokens is made to close its thinking: the end tag's tokens are the
only ones it may choose next (:meth:`ReasoningParser.forced`), and it goes on to its answer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.engine.tools import partial_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThinkTags:
    start: str
    end: str


REASONING_TAGS = {"think-tags": ThinkTags("<think>", "</think>")}

START = "start"  # nothing but whitespace yet: the reply may open its thinking
THINKING = "thinking"
AFTER = "after"  # the thinking ended: the whitespace before the answer is dropped
ANSWER = "answer"


class ReasoningParser:
    """Splits one reply's text, as it streams, into thinking and answer.

    ``thinking``: the prompt opened the tag (the reply starts inside it); ``closed_in_prompt``:
    it opened and closed it (Qwen3's template told not to think), and the reply is all answer.
    Otherwise the reply thinks only if it starts with the tag (``may_open``; false under a
    grammar whose start tag is not one token: the grammar applies from the first token). What
    could be the start of a tag is held back until it is known not to be one.

    ``budget``: the most tokens it may think (the start tag not counted), after which the end
    tag's tokens, ``end_ids``, are forced.
    """

    def __init__(
        self,
        tags: ThinkTags,
        thinking: bool,
        may_open: bool = True,
        closed_in_prompt: bool = False,
        opening: int | None = None,
        closing: int | None = None,
        budget: int | None = None,
        end_ids: tuple[int, ...] = (),
    ) -> None:
        self.tags = tags
        self.state = THINKING if thinking else START if may_open else ANSWER
        if closed_in_prompt:  # (a template told not to think)
            self.state = AFTER
        # Under a grammar: the start tag's token, which the reply's first token may be instead
        # of what the grammar allows (None once that token is chosen, or when it cannot be);
        # and the end tag's, whose choice ends the thinking for the grammar at once, whatever
        # text the reply holds back.
        self.opening = opening if self.state == START else None
        self.closing = closing
        self._closed = False  # the end tag's token was chosen (its text may be held back yet)
        self.tokens = 0  # tokens of the reply spent thinking, tags included
        self._buffer = ""
        self._seen = 0  # tokens whose text it was given
        self.budget = budget if end_ids else None
        self.end_ids = end_ids
        self._thinks_from = 0  # the reply's tokens before its thinking (its start tag's, say)
        self._forcing: list[int] = []  # the end tag's tokens still to be forced

    @property
    def limited(self) -> bool:
        """Whether its next tokens may be forced: it thinks under a budget."""
        return self.budget is not None and not self.answering

    def forced(self, generated: list[int]) -> int | None:
        """The token the reply must choose next, after its ``generated`` tokens: once it has
        thought its budget, each of the end tag's tokens in turn (those it has not just written
        itself); None while it may choose freely."""
        budget = self.budget
        if budget is not None and not self._forcing and self.limited and self.state == THINKING:
            if len(generated) - self._thinks_from >= budget:
                written = _tag_begun(generated, self.end_ids)
                if written == len(self.end_ids):  # it closed the tag itself, held back yet
                    self._closed = True
                else:
                    self._forcing = list(self.end_ids[written:])
        return self._forcing[0] if self._forcing else None

    @property
    def answering(self) -> bool:
        """Whether the reply is past its thinking (its grammar, if any, applies now)."""
        return self._closed or self.state in (AFTER, ANSWER)

    def chosen(self, token: int) -> None:
        """The reply's next token was chosen: a forced one is done. Under a grammar, first, the
        start tag's opens the thinking, and anything else was the grammar's: the reply is all
        answer. Later, the end tag's closes the thinking: the grammar applies from the next
        token (the budget forces nothing more either)."""
        if self._forcing and token == self._forcing[0]:
            self._forcing.pop(0)
            if not self._forcing:  # the whole end tag is out: the thinking is over
                self._closed = True
        elif self.opening is not None:
            if token != self.opening:
                self.state = ANSWER
            self.opening = None
        elif token == self.closing:
            self._closed = True

    def push(self, text: str, generated: int) -> tuple[str, str]:
        """Add new text, that of the reply's tokens up to its ``generated``-th; return the
        thinking and the answer that are final now. Those tokens count as thinking when their
        text was (or opened, or closed) the thinking."""
        touched = self.state == THINKING
        self._buffer += text
        reasoning = content = ""
        while True:
            if self.state == START:
                stripped = self._buffer.lstrip()
                if stripped.startswith(self.tags.start):
                    self._buffer, self.state = stripped[len(self.tags.start) :], THINKING
                    self._thinks_from = generated  # (those tokens held the start tag)
                    touched = True
                elif self.tags.start.startswith(stripped):
                    break  # whitespace, or the start of the tag: wait
                else:
                    self.state = ANSWER
            elif self.state == THINKING:
                at = self._buffer.find(self.tags.end)
                if at < 0:
                    keep = partial_tag(self._buffer, self.tags.end)
                    cut = len(self._buffer) - keep
                    reasoning += self._buffer[:cut]
                    self._buffer = self._buffer[cut:]
                    break
                reasoning += self._buffer[:at]
                self._buffer, self.state = self._buffer[at + len(self.tags.end) :], AFTER
            elif self.state == AFTER:
                stripped = self._buffer.lstrip()
                self._buffer = stripped
                if not stripped:
                    break
                self.state = ANSWER
            else:
                content, self._buffer = content + self._buffer, ""
                break
        if touched:
            self.tokens += generated - self._seen
        self._seen = generated
        return reasoning, content

    def flush(self) -> tuple[str, str]:
        """At the end of the reply, what is still held back: the thinking of a reply cut while
        it thought, or the whitespace of one that never said anything."""
        rest, self._buffer = self._buffer, ""
        if self.state == THINKING:
            return rest, ""
        return "", rest if self.state in (START, ANSWER) else ""


def reasoning_tags(reasoning_format: str, tokenizer: Any, name: str) -> ThinkTags | None:
    """The tags of a model's ``reasoning_format`` (None: ``none``). A tag its tokenizer drops
    when decoding (a special token) could never be seen: a warning says so."""
    if reasoning_format == "none":
        return None
    tags = REASONING_TAGS[reasoning_format]
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    if tags.start in special or tags.end in special:
        log.warning(
            "model %s: its tokenizer marks %s or %s special, and decoding drops them: its "
            "thinking cannot be told from its answer, and is not (reasoning_format ignored)",
            name,
            tags.start,
            tags.end,
        )
        return None
    return tags


def _tag_begun(generated: list[int], tag: tuple[int, ...]) -> int:
    """How many of ``tag``'s first tokens ``generated`` ends with (all of them, or some)."""
    for count in range(len(tag), 0, -1):
        if len(generated) >= count and tuple(generated[-count:]) == tag[:count]:
            return count
    return 0


def single_token(tokenizer: Any, text: str) -> int | None:
    """The id of the one token that spells ``text``, or None when it takes several."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def reasoning_parsers(
    tags: ThinkTags | None,
    tokenizer: Any,
    prompt: list[int],
    constrained: bool,
    budget: int | None = None,
) -> Callable[[], ReasoningParser] | None:
    """What makes the parser of each reply to one chat prompt (its ``n`` choices share what the
    prompt and the tags decide): in its thinking already when the prompt ends with the start
    tag. Under a grammar (``constrained``), the reply may open its thinking only with the start
    tag's one token. ``budget``: the most tokens it may think."""
    if tags is None:
        return None
    tail = tokenizer.decode(prompt[-8:], skip_special_tokens=False).rstrip()
    if tail.endswith(tags.end):  # the template closed it: no thinking, whatever the budget
        return functools.partial(ReasoningParser, tags, thinking=False, closed_in_prompt=True)
    opened = tail.endswith(tags.start)
    if budget is None and not constrained:
        return functools.partial(ReasoningParser, tags, thinking=opened)
    # Under a grammar, or a budget: the end tag's one token, whose choice ends the thinking.
    end_ids = tuple(tokenizer(tags.end, add_special_tokens=False)["input_ids"])
    closing = end_ids[0] if len(end_ids) == 1 else None
    opening = single_token(tokenizer, tags.start) if constrained and not opened else None
    return functools.partial(
        ReasoningParser,
        tags,
        thinking=opened,
        # Unconstrained, the reply may write the start tag however; constrained, only as the
        # start tag's one token, which its mask lets through.
        may_open=not constrained or opening is not None,
        opening=opening,
        closing=closing,
        budget=budget,
        end_ids=end_ids,
    )
