"""Prompt-lookup speculative decoding: drafts taken from the text itself, checked in one pass.

A reply that copies its context (an edit of code, a JSON object echoing its input, an answer
quoting a document) repeats runs of tokens it has already seen. A row's :class:`Drafter`
(:mod:`workers.engine.drafts`) finds the most recent earlier occurrence of its last few tokens
in the prompt and the reply so far, and proposes the tokens that followed it. One forward pass
over the last token and the draft gives the model's distribution at every draft position;
:func:`accept` keeps the draft's longest prefix the model agrees with, then adds one token of
its own, so a pass yields 1 to ``len(draft) + 1`` tokens. A pass of a few rows costs about what
a pass of one costs on a CPU (it is bound by reading the weights), so a draft that is right
pays, and one that is wrong costs a little.

Output is unchanged: greedy rows accept a draft token only where it is the argmax; sampled rows
accept draft token ``d`` with probability ``p(d)`` and, on rejection, draw from ``p`` without
``d`` (renormalized): speculative sampling with a draft distribution that puts all its mass on
``d``, which keeps every token's distribution exactly ``p`` (Leviathan et al., 2023).
"""

from __future__ import annotations

from typing import Any, cast

import torch

from config.events import Event
from workers.engine.batch import BatchState
from workers.engine.drafts import Drafter
from workers.engine.output import TokenOutput
from workers.engine.sampling import SamplingParams, truncate
from workers.engine.sequences import Sequence


def accept(
    logits: torch.Tensor,
    draft: list[int],
    params: SamplingParams,
    generator: torch.Generator | None,
) -> list[int]:
    """The tokens one row emits after a verifying pass: ``logits[i]`` ([len(draft) + 1, vocab])
    is the model's prediction after the row's last token and ``draft[:i]``. Returns the accepted
    prefix of ``draft`` and one more token (a correction, or a bonus after a full accept)."""
    if params.greedy:
        best = logits.argmax(dim=-1).tolist()
        kept = 0
        while kept < len(draft) and draft[kept] == best[kept]:
            kept += 1
        return draft[:kept] + [best[kept]]
    for i, token in enumerate(draft):
        probs = _probabilities(logits[i], params)
        if float(torch.rand((), generator=generator)) < float(probs[token]):
            continue
        probs[token] = 0  # rejected: draw from p without d
        return draft[:i] + [_draw(probs, generator)]
    return draft + [_draw(_probabilities(logits[len(draft)], params), generator)]


def _probabilities(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """What a row samples from (temperature, top-k, top-p), as choose_tokens makes it."""
    scaled = logits.float() / params.temperature
    if params.top_k > 0 or params.top_p < 1.0:
        scaled = truncate(scaled, params)
    return torch.softmax(scaled, dim=-1)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    cdf = probs.cumsum(dim=-1)
    target = torch.rand((), generator=generator).to(probs.device) * cdf[-1]
    drawn = torch.searchsorted(cdf, target.reshape(1), right=True)
    return int(drawn.clamp_(max=probs.shape[-1] - 1))


def draft_for(rows: list[Sequence], size: int) -> list[int]:
    """A draft for a decode group, if it is one row that may take one: not under a grammar
    nor thinking under a budget (its masks would have to follow the draft), without penalties
    or logprobs, with room for two tokens more. Keeps the row's :class:`Drafter` up to date."""
    if size <= 0 or len(rows) != 1:
        return []
    seq = rows[0]
    params = seq.params
    room = seq.max_new_tokens - len(seq.generated)
    masked = seq.matcher is not None or seq.reasoning is not None and seq.reasoning.limited
    if masked or params.adjusts_logits or params.logprobs is not None or room < 2:
        return []
    if seq.drafter is None:
        seq.drafter = Drafter(seq.prompt + seq.generated)
    else:
        seq.drafter.extend(seq.generated[len(seq.drafter.tokens) - len(seq.prompt) :])
    return seq.drafter.draft(min(size, room - 1))


def verify(model: Any, batch: BatchState, draft: list[int], extra: dict[str, Any]) -> torch.Tensor:
    """One pass over a one-row batch's last token and ``draft``, written to its cache; returns
    the logits after each of them ([len(draft) + 1, vocab])."""
    tokens = torch.tensor([[int(batch.last_tokens[0]), *draft]], device=batch.mask.device)
    steps = torch.arange(tokens.shape[1], device=batch.mask.device)
    positions = batch.mask.sum(-1, keepdim=True) + steps
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones(1, tokens.shape[1])], dim=-1)
    out = model(
        input_ids=tokens,
        attention_mask=batch.mask,
        position_ids=positions,
        past_key_values=batch.cache,
        use_cache=True,
        **extra,
    )
    return cast(torch.Tensor, out.logits[0])


def speculate(
    model: Any,
    output: TokenOutput,
    batch: BatchState,
    seq: Sequence,
    draft: list[int],
    extra: dict[str, Any],
    events: list[Event],
) -> int:
    """Decode a one-row group with a draft: one pass checks it, the row takes what the model
    agrees with and one token more, and the cache forgets the draft tokens it did not take.
    Returns how many draft tokens were taken."""
    tokens = accept(verify(model, batch, draft, extra), draft, seq.params, seq.generator)
    output.accept(seq, tokens, events)
    batch.drop_last(len(draft) + 1 - len(tokens))
    batch.last_tokens = batch.last_tokens.new_tensor(tokens[-1:])
    assert seq.drafter is not None  # draft_for made it, with the draft
    seq.drafter.taken(len(tokens) - 1)
    return len(tokens) - 1
