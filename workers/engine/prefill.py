"""Prefill passes: prompts (or the rest of prompts) run through the model to fill their cache.

A prompt may start with keys and values it already has (a prefix from the prefix cache, or the
chunks of a long prompt prefilled by earlier steps): its *part* holds them as a one-row batch, and
the pass reads only the tokens after them. Several prompts in one pass are left-padded twice: their
parts to a common length, then the new tokens to theirs; positions are counted per row, so the
padding in between changes nothing.

:class:`PrefillBudget` sizes a step's prefill: with streams running, about as long as
``RATIO`` decode steps, so a long prompt joining never stalls them for more than a chunk's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch

from workers.engine.batch import BatchState
from workers.engine.kvcache import MIN_HEADROOM, new_cache
from workers.engine.prefix import BLOCK

RATIO = 1.8  # a step's prefill may take this many decode steps' time while streams run
LEAST = 16  # tokens a chunk prefills at least
SMOOTHING = 0.3  # weight of the newest measurement in the moving averages


@dataclass
class Piece:
    """One row of a prefill pass: what it already has, and the tokens it reads now."""

    part: BatchState | None  # one row of keys and values for the tokens before ``tokens``
    tokens: list[int]
    blocks: list[torch.Tensor] = field(default_factory=list)  # or those, from the prefix cache

    @property
    def offset(self) -> int:
        return self.part.mask.shape[1] if self.part is not None else len(self.blocks) * BLOCK


def prefill_forward(
    model: Any,
    pieces: list[Piece],
    pad_id: int,
    keep_all_logits: bool,
    extra: dict[str, Any],
    row_capacity: int = 0,
) -> tuple[Any, BatchState]:
    """One forward pass over ``pieces``; returns the model's output and the rows' batch (whose
    cache holds each row's earlier part and its new tokens, with room for ``row_capacity`` rows
    when it is to become the running batch)."""
    device = next(model.parameters()).device
    length = max(len(piece.tokens) for piece in pieces)
    if len(pieces) == 1 and pieces[0].part is not None:
        past = pieces[0].part  # a lone row continues its own cache: nothing is copied
    else:
        past = _merge(pieces, model.config, device, length, row_capacity)
    ids = torch.full((len(pieces), length), pad_id, dtype=torch.long, device=device)
    new = torch.zeros((len(pieces), length), dtype=torch.long, device=device)
    for row, piece in enumerate(pieces):
        ids[row, length - len(piece.tokens) :] = torch.tensor(piece.tokens, dtype=torch.long)
        new[row, length - len(piece.tokens) :] = 1
    offsets = torch.tensor([piece.offset for piece in pieces], device=device)[:, None]
    positions = (offsets + new.cumsum(-1) - 1).clamp(min=0)
    mask = torch.cat([past.mask, new], dim=1)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=past.cache,
        use_cache=True,
        logits_to_keep=0 if keep_all_logits else 1,
        **extra,
    )
    last = torch.zeros(len(pieces), dtype=torch.long, device=device)
    return out, BatchState(past.cache, mask, last)


def _merge(
    pieces: list[Piece], config: Any, device: torch.device, coming: int, row_capacity: int
) -> BatchState:
    """What the pieces already have as one batch, each row right-aligned to the longest (rows
    with nothing are empty), in buffers with room for ``coming`` more columns: one copy."""
    layer: Any  # transformers' layer classes: their keys and values are typed optional
    cache = new_cache(config)
    length = max(piece.offset for piece in pieces)
    mask = torch.zeros((len(pieces), length), dtype=torch.long, device=device)
    if length == 0:
        for layer in cache.layers:
            layer.row_capacity = row_capacity
        return BatchState(cache, mask, mask.new_zeros(len(pieces)))
    like: torch.Tensor = next(
        cast(Any, p.part.cache.layers[0]).keys[0, :, :0]
        if p.part is not None
        else p.blocks[0][0, 0, :, :0]
        for p in pieces
        if p.offset
    )  # [kv_heads, 0, head_dim]
    rows = max(len(pieces), row_capacity)
    shape = (len(cache.layers), 2, rows, like.shape[0], length + coming + MIN_HEADROOM)
    buffer = like.new_empty((*shape, like.shape[2]))
    for row, piece in enumerate(pieces):
        start = length - piece.offset
        mask[row, start:] = 1
        # Only padding is zeroed: the rest is written before it is read (zeroing a long row
        # that is then overwritten would double the cost of reusing its prefix).
        buffer[:, :, row, :, :start] = 0
        if piece.part is not None:
            for number, layer in enumerate(piece.part.cache.layers):
                buffer[number, 0, row, :, start:length] = layer.keys[0]
                buffer[number, 1, row, :, start:length] = layer.values[0]
            continue
        for block in piece.blocks:  # [layers, 2, kv_heads, BLOCK, head_dim]
            buffer[:, :, row, :, start : start + BLOCK] = block
            start += BLOCK
    for number, layer in enumerate(cache.layers):
        layer.use(buffer[number, 0], buffer[number, 1], length, len(pieces))
    return BatchState(cache, mask, mask.new_zeros(len(pieces)))


def row_kv(state: BatchState, row: int, start: int = 0, end: int | None = None) -> torch.Tensor:
    """Row ``row``'s keys and values of its real tokens ``start`` to ``end``, without padding:
    ``[layers, 2, kv_heads, tokens, head_dim]`` (what the prefix cache stores)."""
    columns = state.mask[row].nonzero().squeeze(1)[start:end]
    first, count = int(columns[0]), len(columns)
    layers: list[Any] = state.cache.layers  # transformers' layer classes: keys typed optional
    keys: torch.Tensor = layers[0].keys
    out = keys.new_empty((len(layers), 2, keys.shape[1], count, keys.shape[3]))
    contiguous = int(columns[-1]) - first + 1 == count  # no padding among them (a lone row)
    for number, layer in enumerate(layers):  # one copy: a strided write per layer and side
        for side, kv in enumerate((layer.keys, layer.values)):
            if contiguous:
                out[number, side] = kv[row, :, first : first + count]
            else:  # a gather is several times slower than a slice: only when needed
                torch.index_select(kv[row], 1, columns, out=out[number, side])
    return out


class PrefillBudget:
    """How many prompt tokens a step may prefill: all it may (``most``) when no stream runs;
    with streams running, as many as take about ``RATIO`` decode steps' time.

    That size is learnt from the passes themselves: after a pass that used its budget (or took
    too long), the budget is scaled by the time the pass should have taken over the time it
    took. A fixed cost per token would not do: a chunk's cost grows with the context it attends
    to, so a long prompt's later chunks cost more per token than its first; and a pass has a
    fixed part (reading the weights), which a budget learnt only from passes near its own size
    counts rightly.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.size = min(most, 4 * LEAST)  # until a pass has been measured: small, and safe
        self.decode_seconds: float | None = None

    def tokens(self, streams_running: bool) -> int:
        return self.size if streams_running else self.most

    def decoded(self, seconds: float) -> None:
        self.decode_seconds = _average(self.decode_seconds, seconds)

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or seconds <= 0 or self.decode_seconds is None:
            return
        target = RATIO * self.decode_seconds
        # A pass well under its budget tells little of a full one (its fixed part weighs more).
        if tokens >= 0.9 * self.size or seconds > target:
            self.size = max(LEAST, min(self.most, int(tokens * target / seconds)))


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new
