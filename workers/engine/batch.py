"""The running batch's tensors: a left-padded KV cache and attention mask, one row per sequence.

Rows join after their own (batched) prefill by left-padding both sides to a common length and
concatenating; rows leave by index selection; columns that only padding uses are trimmed away
(see :mod:`workers.engine.kvcache`: a decode step writes in place, only joins and leaves copy).
Positions come from the mask (count of real tokens), so padding, even between a reused prefix and
the rest of a prompt, never shifts a sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from workers.engine.kvcache import GrowingLayer


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class BatchState:
    """KV cache, attention mask and the last sampled (not yet cached) token of every row."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor, last_tokens: torch.Tensor) -> None:
        self.cache = cache
        self.mask = mask  # [rows, cached length], 1 for a real token
        self.last_tokens = last_tokens  # [rows]

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def decode_inputs(self) -> dict[str, Any]:
        """Inputs for one decode step: feed each row's last token at its own next position."""
        positions = self.mask.sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=-1)
        return {
            "input_ids": self.last_tokens[:, None],
            "attention_mask": self.mask,
            "position_ids": positions,
            "past_key_values": self.cache,
        }

    def drop_last(self, columns: int) -> None:
        """Forget the last ``columns`` columns of every row (draft tokens a verifying pass wrote
        and the model did not accept; see workers.engine.speculation). Growing layers only."""
        self.mask = self.mask[:, : self.mask.shape[1] - columns]
        for layer in _filled(self.cache):
            layer.drop_last_columns(columns)

    def select(self, rows: list[int]) -> None:
        """Keep ``rows`` in that order; a row listed twice is copied (n choices of one prompt)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        for layer in _filled(self.cache):
            if isinstance(layer, GrowingLayer):
                layer.select_rows(index)
            else:
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)

    def keep(self, rows: list[int]) -> list[int]:
        """Keep only ``rows`` (ascending), then trim columns no remaining row uses. Returns their
        new order: a row that left is replaced by one of the last rows, so only those move."""
        gone = set(range(self.rows)) - set(rows)
        tail = [i for i in rows if i >= len(rows)]
        order = [i if i not in gone else tail.pop() for i in range(len(rows))]
        index = torch.tensor(order, dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        moves = [(source, target) for target, source in enumerate(order) if source != target]
        for layer in _filled(self.cache):
            if isinstance(layer, GrowingLayer):
                layer.move_rows(moves, len(order))
            else:
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in _filled(self.cache):
                if isinstance(layer, GrowingLayer):
                    layer.drop_columns(start)
                else:
                    layer.keys = layer.keys[:, :, start:, :]
                    layer.values = layer.values[:, :, start:, :]
        return order

    def extend(self, other: BatchState, row_capacity: int = 0) -> None:
        """Append the rows of ``other`` after this batch's rows (room is made for
        ``row_capacity`` rows when the buffers must grow)."""
        length = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = torch.cat([_left_pad(self.mask, length, 1), _left_pad(other.mask, length, 1)])
        self.last_tokens = torch.cat([self.last_tokens, other.last_tokens])
        mine: Any  # transformers' layer classes: their keys and values are typed optional
        theirs: Any
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            if isinstance(mine, GrowingLayer):
                mine.append_rows(theirs.keys, theirs.values, row_capacity)
                continue
            mine.keys = torch.cat(
                [_left_pad(mine.keys, length, 2), _left_pad(theirs.keys, length, 2)]
            )
            mine.values = torch.cat(
                [_left_pad(mine.values, length, 2), _left_pad(theirs.values, length, 2)]
            )


def _filled(cache: DynamicCache) -> list[Any]:
    layers: list[Any] = cache.layers  # transformers' layer classes: keys typed optional
    return [layer for layer in layers if layer.is_initialized and layer.keys.numel()]


def prefill_inputs(
    prompts: list[list[int]], pad_id: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Left-padded inputs that run several prompts in one forward pass; also returns the mask."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), length), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, length - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    return inputs, mask
