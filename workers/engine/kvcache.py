"""The KV cache's memory: layers whose keys and values are views of larger buffers.

transformers' ``DynamicLayer`` grows by concatenation, so every decode step copies the whole
batch's cache (batch size x length x layers) to add one column, and our batch used to copy it
again whenever rows joined or left. A :class:`GrowingLayer` keeps the batch in buffers with spare
rows and columns, and returns views of them:

- a decode step writes its column in place;
- rows that join are written into spare rows, right-aligned with the others (the batch is
  left-padded), in place unless they are longer than the room on the left;
- rows that leave are replaced by the last rows (one row copied per row that left, not the batch);
- columns that only padding uses are dropped by moving the view's start.

The buffers are reallocated (one copy of the batch) only when rows or columns run out; they then
grow by half, so the copies per token stay bounded. Padding inside the views is zero (masked out,
but it must be finite: a masked NaN would still poison the attention's sum).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_HEADROOM = 64  # columns of spare capacity at least, whenever a layer's buffer is (re)made


# transformers' CacheLayerMixin leaves __init_subclass__ and __init__ unannotated.
class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's cache: ``keys``/``values`` are ``[rows, heads, length, head_dim]`` views of
    ``[row capacity, heads, column capacity, head_dim]`` buffers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # unannotated upstream
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None
        self.rows = 0
        self.start = 0  # the first column of the view in the buffers
        self.length = 0
        self.row_capacity = 0  # rows to make room for when the buffers are first made

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        added = key_states.shape[-2]
        if self.key_buffer is None:
            self.rows = key_states.shape[0]
            self._reallocate(key_states, max(self.rows, self.row_capacity), 0, added)
        elif self.start + self.length + added > self.key_buffer.shape[2]:
            self._reallocate(key_states, self.key_buffer.shape[0], 0, self.length + added)
        assert self.key_buffer is not None and self.value_buffer is not None  # made just above
        end = self.start + self.length
        self.key_buffer[: self.rows, :, end : end + added] = key_states
        self.value_buffer[: self.rows, :, end : end + added] = value_states
        self.length += added
        return self._view()

    def _reallocate(self, like: torch.Tensor, row_capacity: int, left: int, width: int) -> None:
        """New buffers for ``row_capacity`` rows and ``left`` + ``width`` columns and headroom;
        the current view is copied to start at column ``left``. The rest is left unwritten: a
        column becomes visible only once written (a step), or zeroed (padding of joining rows)."""
        capacity = left + width + max(MIN_HEADROOM, width // 2)
        shape = (row_capacity, like.shape[1], capacity, like.shape[3])
        key_buffer, value_buffer = like.new_empty(shape), like.new_empty(shape)
        if self.key_buffer is not None and self.length:
            assert self.keys is not None and self.values is not None  # the buffers' view
            key_buffer[: self.rows, :, left : left + self.length] = self.keys
            value_buffer[: self.rows, :, left : left + self.length] = self.values
        self.key_buffer, self.value_buffer, self.start = key_buffer, value_buffer, left
        self._view()

    def use(
        self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int, rows: int
    ) -> None:
        """Take buffers filled elsewhere (their first ``rows`` rows and ``length`` columns)."""
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.rows, self.start, self.length = rows, 0, length
        self.dtype, self.device, self.is_initialized = key_buffer.dtype, key_buffer.device, True
        self._view()

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep the rows in ``index``, in that order, repeats allowed (copies those rows)."""
        assert self.key_buffer is not None and self.value_buffer is not None  # a filled layer
        self.key_buffer = self.key_buffer[: self.rows, :, self.start :].index_select(0, index)
        self.value_buffer = self.value_buffer[: self.rows, :, self.start :].index_select(0, index)
        self.rows, self.start = len(index), 0
        self._view()

    def move_rows(self, moves: list[tuple[int, int]], rows: int) -> None:
        """Copy row ``source`` to row ``target`` for each ``(source, target)``, then keep the
        first ``rows`` rows."""
        assert self.key_buffer is not None and self.value_buffer is not None  # a filled layer
        columns = slice(self.start, self.start + self.length)
        for source, target in moves:
            self.key_buffer[target, :, columns] = self.key_buffer[source, :, columns]
            self.value_buffer[target, :, columns] = self.value_buffer[source, :, columns]
        self.rows = rows
        self._view()

    def append_rows(self, keys: torch.Tensor, values: torch.Tensor, row_capacity: int) -> None:
        """Add rows after these, right-aligned with them (the shorter side is left-padded with
        zeros: masked out, but they must be finite)."""
        assert self.key_buffer is not None and self.value_buffer is not None  # a filled layer
        new, theirs = keys.shape[0], keys.shape[2]
        left = max(0, theirs - self.length)  # columns the new rows need before the view's start
        if self.rows + new > self.key_buffer.shape[0] or left > self.start:
            capacity = max(row_capacity, self.rows + new)
            self._reallocate(keys, capacity, left + MIN_HEADROOM, self.length)
        end = self.start + self.length
        if left:
            self.start, self.length = self.start - left, self.length + left
            for buffer in (self.key_buffer, self.value_buffer):
                buffer[: self.rows, :, self.start : self.start + left] = 0
        for buffer, part in ((self.key_buffer, keys), (self.value_buffer, values)):
            buffer[self.rows : self.rows + new, :, self.start : end - theirs] = 0
            buffer[self.rows : self.rows + new, :, end - theirs : end] = part
        self.rows += new
        self._view()

    def drop_columns(self, count: int) -> None:
        """Forget the first ``count`` columns (padding no row uses any more): no copy."""
        self.start += count
        self.length -= count
        self._view()

    def drop_last_columns(self, count: int) -> None:
        """Forget the last ``count`` columns (they are overwritten by the next ones): no copy."""
        self.length -= count
        self._view()

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.key_buffer is not None and self.value_buffer is not None  # made before
        end = self.start + self.length
        self.keys = self.key_buffer[: self.rows, :, self.start : end]
        self.values = self.value_buffer[: self.rows, :, self.start : end]
        return self.keys, self.values


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
    return cast(int, 2 * text.num_hidden_layers * heads * head_dim * element)
