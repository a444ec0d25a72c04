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

from dataclasses import dataclass
from typing import Any

import torch

from workers.engine.batch import BatchState
from workers.engine.kvcache import new_cache

RATIO = 1.5  # a step's prefill may take this many decode steps' time while streams run
LEAST = 16  # tokens a chunk prefills at least
SMOOTHING = 0.3  # weight of the newest measurement in the moving averages


@dataclass
class Piece:
    """One row of a prefill pass: what it already has, and the tokens it reads now."""

    part: BatchState | None  # one row of keys and values for the tokens before ``tokens``
    tokens: list[int]

    @property
    def offset(self) -> int:
        return 0 if self.part is None else self.part.mask.shape[1]


def prefill_forward(
    model: Any, pieces: list[Piece], pad_id: int, keep_all_logits: bool, extra: dict[str, Any]
) -> tuple[Any, BatchState]:
    """One forward pass over ``pieces``; returns the model's output and the rows' batch (whose
    cache holds each row's earlier part and its new tokens)."""
    device = next(model.parameters()).device
    if len(pieces) == 1 and pieces[0].part is not None:
        past = pieces[0].part  # a lone row continues its own cache: nothing is copied
    else:
        past = _merge([piece.part for piece in pieces], model.config, device)
    length = max(len(piece.tokens) for piece in pieces)
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


def _merge(parts: list[BatchState | None], config: Any, device: torch.device) -> BatchState:
    """The parts as one batch, each right-aligned to the longest (rows without one are empty)."""
    cache = new_cache(config)
    length = max((p.mask.shape[1] for p in parts if p is not None), default=0)
    mask = torch.zeros((len(parts), length), dtype=torch.long, device=device)
    if length == 0:
        return BatchState(cache, mask, mask[:, :0])
    sample = next(p for p in parts if p is not None).cache.layers
    for number, layer in enumerate(cache.layers):
        like = sample[number].keys
        shape = (len(parts), like.shape[1], length, like.shape[3])
        keys, values = like.new_zeros(shape), like.new_zeros(shape)
        for row, part in enumerate(parts):
            if part is None:
                continue
            size = part.mask.shape[1]
            keys[row, :, length - size :] = part.cache.layers[number].keys[0]
            values[row, :, length - size :] = part.cache.layers[number].values[0]
        layer.lazy_initialization(keys, values)
        layer.adopt(keys, values)
    for row, part in enumerate(parts):
        if part is not None:
            mask[row, length - part.mask.shape[1] :] = 1
    return BatchState(cache, mask, mask[:, 0])


def part_from_kv(kv: torch.Tensor, config: Any) -> BatchState:
    """A one-row part from ``[layers, 2, kv_heads, length, head_dim]`` keys and values."""
    cache = new_cache(config)
    for number, layer in enumerate(cache.layers):
        keys, values = kv[number, 0][None], kv[number, 1][None]
        layer.lazy_initialization(keys, values)
        layer.adopt(keys, values)
    mask = torch.ones((1, kv.shape[3]), dtype=torch.long, device=kv.device)
    return BatchState(cache, mask, mask[:, 0])


def row_kv(state: BatchState, row: int) -> torch.Tensor:
    """Row ``row``'s keys and values without its padding: ``[layers, 2, kv_heads, length,
    head_dim]`` (what the prefix cache stores)."""
    columns = state.mask[row].bool()
    whole = bool(columns.all())
    layers = []
    for layer in state.cache.layers:
        keys, values = layer.keys[row], layer.values[row]
        if not whole:
            keys, values = keys[:, columns], values[:, columns]
        layers.append(torch.stack([keys, values]))
    return torch.stack(layers)


class PrefillBudget:
    """How many prompt tokens a step may prefill: all it may (``most``) when no stream runs;
    with streams running, what fits in ``RATIO`` times a decode step, from moving averages of
    both costs."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.decode_seconds: float | None = None
        self.seconds_per_token: float | None = None

    def tokens(self, streams_running: bool) -> int:
        if not streams_running or self.decode_seconds is None or not self.seconds_per_token:
            return self.most
        fits = int(RATIO * self.decode_seconds / self.seconds_per_token)
        return max(LEAST, min(self.most, fits))

    def decoded(self, seconds: float) -> None:
        self.decode_seconds = _average(self.decode_seconds, seconds)

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens > 0:
            self.seconds_per_token = _average(self.seconds_per_token, seconds / tokens)


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new
