"""A decode pass for Llama-architecture models with fewer operations than transformers' own.

A decode step of one row on a CPU is bound by per-operation overhead, not arithmetic: each of
SmolLM2's 30 layers runs some 40 modules' worth of small kernels and Python between them. This
forward does the same arithmetic, in the same dtype, with less around it:

- one 4-bit matrix product for the query, key and value projections and one for the gate and
  up projections (their 4-bit copies, see ``workers/int4.py``, put end to end), where the step
  has few enough rows to read the 4-bit weights; the layers' own modules otherwise;
- torch's fused ``rms_norm``; the rotary angles once a pass, not once a layer;
- the decode attention of :mod:`workers.engine.attention`, with the mask built once a pass;
- the model's head over the positions asked for only.

It takes what a decode step and a speculative check pass transformers' forward (ids, the 2D
mask, positions, the cache) and returns an object with ``logits``, so the engine calls either
the same way. :func:`decoder_for` gives one only for a plain ``LlamaForCausalLM`` (SmolLM2,
Llama, and the models converted from GGUF as such) with no biases, SiLU and no adapters; any
other model keeps transformers' forward. Prefill passes always do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from workers.engine.attention import decode_attention
from workers.int4 import GROUP, MAX_ROWS, Int4Linear

TILE = 64  # output rows torch's CPU 4-bit packing interleaves together


@dataclass
class DecodeOutput:
    logits: torch.Tensor  # [rows, queries, vocab]


class Fused:
    """Several 4-bit linear layers that read one input, as one 4-bit product; calls with more
    rows than :data:`workers.int4.MAX_ROWS` run the layers one by one (their dense weights)."""

    def __init__(self, layers: list[Int4Linear]) -> None:
        self.layers = layers
        self.sizes = [layer.out_features for layer in layers]
        self.weight = torch.cat([layer.int4_weight for layer in layers])
        self.scales = torch.cat([layer.int4_scales for layer in layers], dim=1)
        start = 0
        for layer in layers:  # the layers read views of the joined copy: it is not kept twice
            layer.int4_weight = self.weight[start : start + layer.out_features]
            start += layer.out_features

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[0] > MAX_ROWS or x.dtype != self.scales.dtype:
            return [layer(x) for layer in self.layers]
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight, GROUP, self.scales)
        return list(out.split(self.sizes, dim=-1))


def _joined(layers: list[Any]) -> Fused | None:
    """The layers as one :class:`Fused`, where their 4-bit copies can be put end to end: torch
    packs output rows in tiles of :data:`TILE`, so every layer but the last must fill its tiles."""
    if not all(type(layer) is Int4Linear and layer.bias is None for layer in layers):
        return None
    if any(layer.out_features % TILE for layer in layers[:-1]):
        return None
    return Fused(layers)


class LlamaDecoder:
    """The decode forward (see the module's text) of one ``LlamaForCausalLM``."""

    def __init__(self, model: Any) -> None:  # a transformers LlamaForCausalLM
        config = model.config
        self.embed = model.model.embed_tokens
        self.rotary = model.model.rotary_emb
        self.norm = model.model.norm
        self.head = model.lm_head
        self.eps = config.rms_norm_eps
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.layers = model.model.layers
        attentions, mlps = [la.self_attn for la in self.layers], [la.mlp for la in self.layers]
        self.qkv = [_joined([a.q_proj, a.k_proj, a.v_proj]) for a in attentions]
        self.gate_up = [_joined([m.gate_proj, m.up_proj]) for m in mlps]

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any,
        **_: Any,
    ) -> DecodeOutput:
        rows, queries = input_ids.shape
        flat = rows * queries
        x = self.embed(input_ids).view(flat, -1)
        cos, sin = self.rotary(x, position_ids)
        allowed = _allowed(attention_mask, queries)
        for index, layer in enumerate(self.layers):
            attention, mlp = layer.self_attn, layer.mlp
            h = _rms_norm(x, layer.input_layernorm, self.eps)
            fused = self.qkv[index]
            if fused:
                q, k, v = fused(h)
            else:
                q, k, v = attention.q_proj(h), attention.k_proj(h), attention.v_proj(h)
            q = q.view(rows, queries, self.heads, self.head_dim).transpose(1, 2)
            k = k.view(rows, queries, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(rows, queries, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            keys, values = past_key_values.update(k, v, index)
            out = decode_attention(q, keys, values, allowed, attention.scaling)
            x = x + attention.o_proj(out.transpose(1, 2).reshape(flat, -1))
            h = _rms_norm(x, layer.post_attention_layernorm, self.eps)
            fused = self.gate_up[index]
            gate, up = fused(h) if fused else (mlp.gate_proj(h), mlp.up_proj(h))
            x = x + mlp.down_proj(F.silu(gate) * up)
        x = _rms_norm(x, self.norm, self.eps)
        return DecodeOutput(self.head(x).view(rows, queries, -1))


def _rms_norm(x: torch.Tensor, norm: Any, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), norm.weight, eps)


def _allowed(mask: torch.Tensor, queries: int) -> torch.Tensor | None:
    """Which cached positions each new token sees, ``[rows, 1, 1, queries, length]``, from the
    2D mask (1: a real token); None when every row sees every position (one token, no padding)."""
    seen = mask.bool()
    length = seen.shape[1]
    if queries == 1:
        return None if bool(seen.all()) else seen[:, None, None, None, :]
    causal = torch.ones(queries, length, dtype=torch.bool, device=mask.device)
    return seen[:, None, None, None, :] & causal.tril(length - queries)


def decoder_for(model: Any) -> LlamaDecoder | None:
    """A :class:`LlamaDecoder` for ``model`` where it computes what transformers' forward does;
    None otherwise (the engine then uses the model's own forward)."""
    config = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or config is None:
        return None
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return None
    if getattr(config, "hidden_act", None) != "silu" or getattr(model, "peft_config", None):
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    return LlamaDecoder(model)
