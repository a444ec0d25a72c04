"""The KV cache's memory: layers whose keys and values are views of a larger buffer.

transformers' ``DynamicLayer`` grows by concatenation, so every decode step copies the whole
batch's cache (batch size x length x layers) to add one column. A :class:`GrowingLayer` writes the
new column in place into spare capacity and returns views; it copies only when the capacity runs
out (then it grows by half its length, so a sequence of steps copies each token a bounded number
of times) and when rows join or leave the batch (see :mod:`workers.engine.batch`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_HEADROOM = 64  # columns of spare capacity at least, whenever a layer's buffer is (re)made


class GrowingLayer(DynamicLayer):
    """One layer's cache: ``keys``/``values`` are ``[rows, heads, length, head_dim]`` views of
    buffers with spare columns after them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None
        self.start = 0  # the first column of the view in the buffers
        self.length = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        added = key_states.shape[-2]
        if self.key_buffer is None or self.start + self.length + added > self.key_buffer.shape[2]:
            self._grow(key_states, self.length + added)
        end = self.start + self.length
        self.key_buffer[:, :, end : end + added] = key_states
        self.value_buffer[:, :, end : end + added] = value_states
        self.length += added
        self._view()
        return self.keys, self.values

    def _grow(self, like: torch.Tensor, needed: int) -> None:
        capacity = needed + max(MIN_HEADROOM, needed // 2)
        if self.length:
            self.adopt(self.keys, self.values, capacity)
            return
        shape = (like.shape[0], like.shape[1], capacity, like.shape[3])
        self.key_buffer, self.value_buffer = like.new_empty(shape), like.new_empty(shape)
        self.start = 0

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, capacity: int | None = None) -> None:
        """Take ``keys``/``values`` (made elsewhere: rows joined or selected) as the cache,
        copied into buffers with room to grow."""
        length = keys.shape[2]
        capacity = capacity or length + max(MIN_HEADROOM, length // 2)
        shape = (keys.shape[0], keys.shape[1], capacity, keys.shape[3])
        self.key_buffer = keys.new_empty(shape)
        self.value_buffer = values.new_empty(shape)
        self.key_buffer[:, :, :length] = keys
        self.value_buffer[:, :, :length] = values
        self.start, self.length = 0, length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._view()

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep the rows in ``index`` (one copy of those rows, spare columns included)."""
        self.key_buffer = self.key_buffer[:, :, self.start :].index_select(0, index)
        self.value_buffer = self.value_buffer[:, :, self.start :].index_select(0, index)
        self.start = 0
        self._view()

    def append_rows(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows after these, the shorter side left-padded with zeros (masked out): one copy
        of both into new buffers."""
        rows, length = self.keys.shape[0], max(self.length, keys.shape[2])
        capacity = length + max(MIN_HEADROOM, length // 2)
        shape = (rows + keys.shape[0], keys.shape[1], capacity, keys.shape[3])
        key_buffer, value_buffer = keys.new_zeros(shape), values.new_zeros(shape)
        pairs = ((key_buffer, self.keys, keys), (value_buffer, self.values, values))
        for buffer, mine, theirs in pairs:
            buffer[:rows, :, length - mine.shape[2] : length] = mine
            buffer[rows:, :, length - theirs.shape[2] : length] = theirs
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.start, self.length = 0, length
        self._view()

    def drop_columns(self, count: int) -> None:
        """Forget the first ``count`` columns (padding no row uses any more): no copy."""
        self.start += count
        self.length -= count
        self._view()

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def _view(self) -> None:
        end = self.start + self.length
        self.keys = self.key_buffer[:, :, self.start : end]
        self.values = self.value_buffer[:, :, self.start : end]


def new_cache(config: Any) -> DynamicCache:
    """An empty cache for ``config``'s model whose full-attention layers grow in place (a
    sliding-window layer keeps transformers' own class, which trims itself)."""
    cache = DynamicCache(config=config)
    cache.layers = [
        GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


def growing(cache: DynamicCache) -> bool:
    """Whether every layer of ``cache`` is a :class:`GrowingLayer` (no sliding windows): the
    layout the prefix cache and chunked prefill rely on."""
    return all(isinstance(layer, GrowingLayer) for layer in cache.layers)


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token takes in the cache, all layers together."""
    text = config.get_text_config(decoder=True)
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    element = torch.tensor([], dtype=dtype).element_size()
    return 2 * text.num_hidden_layers * heads * head_dim * element
