"""From logits to what a client sees: each row's next token (under its grammar and sampling
parameters), logprobs, detokenized text held back at stop strings and tool tags, and the events
that carry them."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import torch

from config.events import Event, Timing, TokenFields, TokenInfo, TokenLogprob, ToolCallDelta
from config.protocol import DONE, ERROR, LENGTH, STOP, TOOL_CALLS, FinishReason
from workers.engine.errors import EngineFailed, JobFailed
from workers.engine.sampling import choose_tokens, process_logits, token_logprobs
from workers.engine.sequences import CALLS_ONLY, JSON_ONLY, JobState, Sequence
from workers.engine.text import TokenBytes

log = logging.getLogger(__name__)


class TokenOutput:
    """Chooses tokens and writes events; ``ending`` collects the jobs whose ``done`` event it
    wrote (the engine finishes their tickets once the events are out)."""

    def __init__(
        self, tokenizer: Any, constraints: Any, eos_ids: set[int], pad_id: int, name: str
    ) -> None:
        self.tokenizer = tokenizer
        self.token_bytes = TokenBytes(tokenizer)
        self.constraints = constraints
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.name = name
        self.ending: list[tuple[Any, str]] = []  # (a JobState or an embedding job, DONE or ERROR)

    def advance(
        self, rows: list[Sequence], logits: torch.Tensor, events: list[Event]
    ) -> torch.Tensor:
        """Choose each row's next token, record it, and emit the text it completes; returns the
        chosen tokens (the rows' next inputs).

        Rows under a grammar may choose only what it allows: their logits are masked first (a
        copy: logprobs report the model's own). A reply that has thought its budget may choose
        only its end tag's next token."""
        raw = logits
        constrained = [i for i, s in enumerate(rows) if s.constrained]
        adjusted = [i for i, s in enumerate(rows) if s.params.adjusts_logits]
        # Under a grammar, a reply that thinks may not end before its answer.
        thinking = [i for i, s in enumerate(rows) if s.matcher is not None and not s.constrained]
        forced = {
            i: token
            for i, s in enumerate(rows)
            if s.reasoning is not None and (token := s.reasoning.forced(s.generated)) is not None
        }
        if constrained or adjusted or thinking or forced:  # a copy (float32: fine penalties)
            logits = logits.to(torch.float32, copy=True)
        for i in thinking:
            logits[i, list(self.eos_ids)] = float("-inf")
        if constrained:
            self.constraints.mask(constrained, [rows[i].matcher for i in constrained], logits)
            for i in constrained:  # a reply's first token may open its thinking instead
                parser = rows[i].reasoning
                opening = parser.opening if parser is not None else None
                if opening is not None:
                    logits[i, opening] = raw[i, opening]
        for i in adjusted:
            seq = rows[i]
            seen = (
                set(seq.prompt) | set(seq.counts) if seq.params.repetition_penalty != 1 else set()
            )
            logits[i] = process_logits(logits[i], seq.params, seq.counts, seen)
        for i, token in forced.items():
            logits[i] = float("-inf")
            logits[i, token] = 0.0
        tokens = choose_tokens(logits, [s.params for s in rows], [s.generator for s in rows])
        gated = set(constrained)  # the rows whose grammar masked this token
        chosen = []
        for i, seq in enumerate(rows):
            if seq.finish_reason is not None:  # its job failed on an earlier row of this step
                chosen.append(self.pad_id)
                continue
            if seq.max_new_tokens <= 0:  # echo with max_tokens 0: the prompt's logprobs only
                chosen.append(self.pad_id)
                self.emit(seq, "", LENGTH, events)
                continue
            token = tokens[i]
            chosen.append(token)
            if seq.params.logprobs is not None:
                entry = token_logprobs(raw[i], token, seq.params.logprobs, self.describe)
                seq.unsent_logprobs.append(entry)
            if seq.reasoning is not None:
                seq.reasoning.chosen(token)  # a tag's token, a forced one, the grammar's first
            if i in gated and seq.answering:  # (not the start tag, nor a thought)
                # A token its grammar did not allow ends the job with an error, never with text
                # that breaks the reply's contract: whether its mask was missed, or the matcher
                # (which must accept what its own mask allowed) disagrees.
                if logits[i, token] == float("-inf"):
                    self._broken(seq, f"token {token} was chosen outside its grammar", events)
                    continue
                if not seq.matcher.consume_token(token):
                    self._broken(seq, f"the grammar refused token {token}", events)
                    continue
            self._record(seq, token, events)
        return torch.tensor(chosen, dtype=torch.long, device=logits.device)

    def accept(self, seq: Sequence, tokens: list[int], events: list[Event]) -> None:
        """Record ``tokens``, chosen already (a verified draft and the model's next token), in
        order, until the sequence ends (an end of sequence, a stop string, its max_tokens)."""
        for token in tokens:
            if seq.finish_reason is not None:
                return
            self._record(seq, token, events)

    def fail(self, job: JobState, error: JobFailed, events: list[Event]) -> None:
        """End ``job`` with ``error``: every sequence of it leaves, its one terminal event is
        this error (nothing, if its ``done`` is already out)."""
        if job.finished:
            return
        for seq in job.sequences:
            if seq.finish_reason is None:
                seq.finish_reason = "error"  # leaves the batch (or the waiting line)
        events.append(job.events.error(error.code, error.message, error.field, error.details))
        self.ending.append((job, ERROR))

    def _broken(self, seq: Sequence, why: str, events: list[Event]) -> None:
        """The reply of ``seq`` would break its contract (its grammar, or what it is forced to
        be): its job ends with an engine error instead, and what broke it is not sent."""
        log.error("engine %s: job %s broke its reply's contract: %s", self.name, seq.job.id, why)
        message = "The model's reply broke its required format; it was stopped."
        self.fail(seq.job, EngineFailed(message), events)

    def prompt_logprobs(self, seq: Sequence, logits: torch.Tensor) -> list[TokenLogprob]:
        """Each prompt token's logprob given the tokens before it (the first has none)."""
        prompt, top = seq.prompt, seq.params.logprobs or 0
        start = logits.shape[0] - len(prompt)  # the prompt sits at the end of its padded row
        first: TokenLogprob = {**self.describe(prompt[0]), "logprob": None, "top": []}
        return [first] + [
            token_logprobs(logits[start + j - 1], prompt[j], top, self.describe)
            for j in range(1, len(prompt))
        ]

    def describe(self, token: int) -> TokenInfo:
        """A token as logprobs show it: its id, its text, and its raw bytes."""
        return {
            "id": token,
            "token": self.tokenizer.decode([token]),
            "bytes": self.token_bytes(token),
        }

    def _record(self, seq: Sequence, token: int, events: list[Event]) -> None:
        seq.generated.append(token)
        seq.unsent.append(token)
        seq.counts[token] = seq.counts.get(token, 0) + 1
        # Under a grammar the end of sequence ends the reply even with ignore_eos: nothing else
        # is allowed once the reply is complete.
        ends = not seq.params.ignore_eos or seq.matcher is not None
        reason: FinishReason | None
        if token in self.eos_ids and ends:
            text, reason = seq.text.flush(), STOP
        else:
            text = seq.text.push(token)
            if seq.text.stopped:
                reason = STOP
            elif seq.matcher is not None and seq.answering and seq.matcher.is_stopped():
                text, reason = text + seq.text.flush(), STOP  # the grammar allows no more
            elif len(seq.generated) >= seq.max_new_tokens:
                text, reason = text + seq.text.flush(), LENGTH
            else:
                reason = None
        if not text and reason is None:
            return  # held back (partial character or possible stop string): nothing to say yet
        self.emit(seq, text, reason, events)

    def emit(
        self, seq: Sequence, text: str, reason: FinishReason | None, events: list[Event]
    ) -> None:
        """A token event with all the sequence has not sent; after the job's last, its done.

        The text goes through the reply's parsers, each holding back what may be the start of
        its tag: the thinking's (its thoughts apart), then the tool calls' (on the answer)."""
        calls: list[ToolCallDelta] = []
        reasoning = ""
        if seq.reasoning is not None:
            reasoning, text = seq.reasoning.push(text, len(seq.generated))
            if reason is not None:
                thought, rest = seq.reasoning.flush()
                reasoning, text = reasoning + thought, text + rest
        if seq.tools is not None:
            text, calls = seq.tools.push(text)
            if reason is not None:
                rest, more = seq.tools.flush()
                text, calls = text + rest, calls + more
                if seq.tools.calls and reason == STOP:
                    reason = TOOL_CALLS  # the reply ends in calls
        if not reasoning and not text and not calls and reason is None:
            return  # all held back (a tag that may be opening): nothing to say yet
        if seq.forced == JSON_ONLY:
            seq.reply += text
        broken = self._breaks_contract(seq, text, reason)
        if broken:
            self._broken(seq, broken, events)
            return
        seq.finish_reason = reason
        event: TokenFields = {
            "index": seq.index,
            "text": text,
            "token_ids": seq.unsent,
            "finish_reason": reason,
        }
        if calls:
            event["tool_calls"] = calls
        if reasoning:
            event["reasoning"] = reasoning
        if seq.params.logprobs is not None:
            event["logprobs"] = seq.unsent_logprobs
            seq.unsent_logprobs = []
        if seq.echo is not None:
            event["echo"], seq.echo = seq.echo, None
        events.append(seq.job.events.token(event))
        seq.unsent = []
        if reason is not None and seq.job.finished:
            self._done(seq.job, events)

    @staticmethod
    def _breaks_contract(seq: Sequence, text: str, reason: FinishReason | None) -> str:
        """Why sending ``text`` (and ending with ``reason``) would break what the reply is
        forced to be (a JSON reply's text so far, with ``text``, is in ``seq.reply``); '' if it
        would not. The grammar already guarantees it: this is the check
        that nothing got past the grammar, whatever the cause."""
        if seq.forced == CALLS_ONLY:
            if text:
                return f"text beside forced tool calls: {text[:40]!r}"
            # (A stop string may cut it anywhere: in a reasoning model's thinking, say.)
            calls = seq.tools is not None and seq.tools.calls
            if reason == STOP and not calls and not seq.text.stopped:
                return "a forced tool call ended without a call"
        elif seq.forced == JSON_ONLY:
            if reason == STOP and not seq.text.stopped:  # a stop string may cut it anywhere
                try:
                    json.loads(seq.reply)
                except ValueError:
                    return f"a JSON reply that does not parse: {seq.reply[:40]!r}"
        return ""

    def _done(self, job: JobState, events: list[Event]) -> None:
        timing: Timing = {"engine": round(time.monotonic() - (job.started or time.monotonic()), 4)}
        events.append(job.events.done(job.usage(), timing))
        self.ending.append((job, DONE))
