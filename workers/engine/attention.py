"""Decode attention on the CPU: one new token a row against a long cache, as two matrix products.

A decode step attends from one query a row to every cached key. torch's
``scaled_dot_product_attention`` runs that on the CPU through its flash kernel, which in
bfloat16 is built for long queries: for one query a row it is 2x to 9x slower than
``softmax(q k^T) v`` as two batched products (one bfloat16 layer of SmolLM2 at 8 rows and 2,000
cached tokens: 8.5 ms against 0.9 ms; ``bench/engine_speed.py`` shows what it does to a step).
Thirty layers of that was most of a long context's step.

So a chat model on the CPU runs with :data:`NAME` as its attention implementation: calls in half
precision with one query a row (:data:`FEW_QUERIES`: decode steps) take the two products (in
float32 SDPA's kernel is as fast or faster), the rest (prefill chunks, speculative checks) go to
transformers' own SDPA function, and so does anything this path does not cover (a soft cap, a
position bias, attention sinks, another device). The masks are SDPA's (boolean, or None where
only causality applies). Scores are the model dtype's products, taken to float32 for the softmax
(what transformers' eager attention does).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "few_query_sdpa"
# Decode steps: one query a row, where SDPA's kernel is slowest. From two queries on it is
# within 2x of the products either way (a prefill chunk of 16 over 5,000 cached tokens is 2x
# faster in it), and it keeps its scores in float32, where the products round them to the
# model's dtype first: a few new tokens after a cached prefix, or a speculative check, are
# closer to a whole prefill in it.
FEW_QUERIES = 1
COPY_BYTES = 8 * 2**20  # keys up to this size are copied to contiguous memory first (faster)


def few_query_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` ``[rows, heads, q, dim]``, ``key``
    and ``value`` ``[rows, kv heads, length, dim]``; returns ``[rows, q, heads, dim]``."""
    queries = query.shape[2]
    if (
        queries > FEW_QUERIES
        or not few_query_dtype(query.dtype)
        or query.device.type != "cpu"
        or dropout
        or kwargs.get("softcap") is not None
        or kwargs.get("position_bias") is not None
        or getattr(module, "sinks", None) is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    allowed = _allowed(attention_mask)
    return attend(query, key, value, allowed, scaling).transpose(1, 2).contiguous(), None


def few_query_dtype(dtype: torch.dtype) -> bool:
    """Whether SDPA's CPU kernel is the slow one for few queries in ``dtype``: in half
    precision it is; in float32 it is as fast as the two products or faster (32 rows of 200
    tokens: 0.5 ms against 4.0), so float32 keeps it."""
    return dtype in (torch.bfloat16, torch.float16)


def decode_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None,
    scaling: float | None = None,
) -> torch.Tensor:
    """:func:`attend` where it is the faster, SDPA otherwise; same arguments and result."""
    if few_query_dtype(query.dtype) and query.shape[2] <= FEW_QUERIES:
        return attend(query, key, value, allowed, scaling)
    mask = allowed[:, :, 0] if allowed is not None else None  # [rows, 1, q, length]
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True
    )


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None,
    scaling: float | None = None,
) -> torch.Tensor:
    """``softmax(q k^T) v`` as two batched products, the query heads grouped by the key head
    they share: ``query`` ``[rows, heads, q, dim]``, ``key`` and ``value`` ``[rows, kv heads,
    length, dim]``, ``allowed`` broadcastable to ``[rows, kv heads, group, q, length]`` (None:
    everything). Returns ``[rows, heads, q, dim]``."""
    rows, heads, queries, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    group = heads // kv_heads  # query heads sharing one key head, consecutive ones
    if not key.is_contiguous() and key.numel() * key.element_size() <= COPY_BYTES:
        key, value = key.contiguous(), value.contiguous()
    grouped = query.reshape(rows, kv_heads, group * queries, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float()
    scores.mul_(scaling if scaling is not None else dim**-0.5)
    scores = scores.view(rows, kv_heads, group, queries, length)
    if allowed is not None:
        # the float's least value, not -inf: a query that may see nothing (a padding position
        # of a batched prefill) must come out finite, or its NaN would reach the cache
        scores.masked_fill_(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs.view(rows, kv_heads, group * queries, length), value)
    return out.view(rows, heads, queries, dim)


def _allowed(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Which keys each query may see, broadcastable to ``[rows, kv heads, group, q, length]``,
    from SDPA's mask ``[rows, 1, q, length]`` (None: every key, as for one token unpadded)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:  # an additive mask: -inf (or the dtype's min) hides
        mask = mask > torch.finfo(mask.dtype).min / 2
    return mask[:, :, None]


AttentionInterface.register(NAME, few_query_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_few_query_attention(model: Any) -> bool:
    """Switch ``model`` (a transformers model on the CPU, running SDPA) to :data:`NAME`;
    whether it was switched."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    if next(model.parameters()).device.type != "cpu":
        return False
    model.set_attn_implementation(NAME)
    return bool(model.config._attn_implementation == NAME)
