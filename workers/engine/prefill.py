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
from typing import Any

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
    cache = new_cache(config)
    length = max(piece.offset for piece in pieces)
    mask = torch.zeros((len(pieces), length), dtype=torch.long, device=device)
    if length == 0:
        for layer in cache.layers:
            layer.row_capacity = row_capacity
        return BatchState(cache, mask, mask.new_zeros(len(pieces)))
    like = next(
        p.part.cache.layers[0].keys[0, :, :0] if p.part is not None else p.blocks[0][0, 0, :, :0]
        for p in pieces
        if p.offset
    )  # [kv_heads, 0, head_dim]
    rows = max(len(pieces), row_capacity)
    shape = (len(cache.layers), 2, rows, like.shape[0], length + coming + MIN_HEADROOM)
    buffer = like.new_empty((*shape, like.shape[2]))
    buffer[:, :, : len(pieces)] = 0  # the rest is written before it is read
    for row, piece in enumerate(pieces):
        start = length - piece.offset
        mask[row, start:] = 1
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


def row_kv(state: BatchState, row: int, start: int = 0) -> torch.Tensor:
    """Row ``row``'s keys and values from its ``start``-th real token on, without padding:
    ``[layers, 2, kv_heads, tokens, head_dim]`` (what the prefix cache stores)."""
    columns = state.mask[row].nonzero().squeeze(1)[start:]
    layers = []
    for layer in state.cache.layers:
        keys = layer.keys[row].index_select(1, columns)
        values = layer.values[row].index_select(1, columns)
        layers.append(torch.stack([keys, values]))
    return torch.stack(layers)


class PrefillBudget:
    """How many prompt tokens a step may prefill: all it may (``most``) when no stream runs;
    with streams running, what fits in ``RATIO`` times a decode step. A prefill's cost is fitted
    as a fixed part plus a part per token (moving averages over recent passes), so that small
    passes, whose fixed costs dominate, do not make the budget look smaller than it is."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.decode_seconds: float | None = None
        self._sums: list[float] | None = None  # averages of n, t, n*n, n*t over recent passes

    def tokens(self, streams_running: bool) -> int:
        per_token, fixed = self._fit()
        if not streams_running or self.decode_seconds is None or per_token is None:
            return self.most
        fits = int((RATIO * self.decode_seconds - fixed) / per_token)
        return max(LEAST, min(self.most, fits))

    def decoded(self, seconds: float) -> None:
        self.decode_seconds = _average(self.decode_seconds, seconds)

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens <= 0:
            return
        sample = [tokens, seconds, tokens * tokens, tokens * seconds]
        if self._sums is None:
            self._sums = sample
        else:
            self._sums = [_average(old, new) for old, new in zip(self._sums, sample, strict=True)]

    def _fit(self) -> tuple[float | None, float]:
        """Seconds per token and fixed seconds of a prefill pass."""
        if self._sums is None:
            return None, 0.0
        n, t, nn, nt = self._sums
        spread = nn - n * n
        if spread > 0.05 * nn:  # passes of different sizes: a line through them
            per_token = (nt - n * t) / spread
            if per_token > 0:
                return per_token, max(0.0, t - per_token * n)
        return t / n, 0.0


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new
