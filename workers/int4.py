"""Linear layers that also keep their weights as 4-bit integers, where that loses nothing.

A decode step of a few rows reads every weight once for a handful of multiply-adds: it is bound
by memory, so reading 4-bit weights instead of bfloat16 ones makes it several times faster (the
linear layers of SmolLM2-135M, one row: 33 ms in bfloat16, 7 ms in 4-bit; see
``bench/engine_speed.py``). A pass of many rows (a prefill, a big batch) is bound by arithmetic,
where the dense bfloat16 weights are faster. So an :class:`Int4Linear` keeps both and picks per
call by the number of rows.

Weights get a 4-bit copy only where it is exact: the blocks of 32 of every row must already sit
on a 16-level grid, as a GGUF checkpoint's Q4_1 weights do once dequantized (each block is
``q * d + m``, ``q`` in 0..15, its least value ``m`` and its greatest ``15 d + m``). A model of
ordinary weights is left as it is; nothing here quantizes. The grid's scale and offset are then
kept in the model's dtype, the same rounding its dense weights get.

torch's ``_weight_int4pack_mm_for_cpu`` computes ``(q - 8) * scale + zero`` per block: scale is
``d`` and zero is ``m + 8 d``. It is fast with bfloat16 activations only (a float32 call is 20x
slower), so the 4-bit copies are made only for a model that runs in bfloat16 on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

GROUP = 32  # weights per block (GGUF's Q4_0 and Q4_1 blocks)
MAX_ROWS = 16  # rows up to which the 4-bit weights are faster (the two times meet at 16)
TOLERANCE = 1e-5  # of a block's range: float32 rounding, not a coarser grid


class Int4Linear(nn.Linear):
    """An ``nn.Linear`` whose calls with few rows read 4-bit weights (see the module's text)."""

    def __init__(self, linear: nn.Linear, packed: torch.Tensor, scales: torch.Tensor) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.register_buffer("int4_weight", packed, persistent=False)
        self.register_buffer("int4_scales", scales, persistent=False)  # [blocks, out, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows > MAX_ROWS or x.dtype != self.int4_scales.dtype:
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.int4_weight, GROUP, self.int4_scales
        )
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def int4_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``weight`` ([out, in], float32) as 4-bit levels ([out, in], int32, 0..15) and per block
    ``(d, m)`` ([out, in / GROUP, 2]) such that each weight is ``q * d + m``; None unless every
    block sits exactly (to float32 rounding) on such a grid."""
    out_features, in_features = weight.shape
    if in_features % GROUP or weight.dtype != torch.float32:
        return None
    blocks = weight.reshape(out_features, in_features // GROUP, GROUP)
    low = blocks.amin(dim=-1, keepdim=True)
    span = blocks.amax(dim=-1, keepdim=True) - low
    step = span / 15
    levels = ((blocks - low) / step.clamp(min=torch.finfo(torch.float32).tiny)).round().clamp(0, 15)
    error = (levels * step + low - blocks).abs()
    if bool((error > TOLERANCE * span).any()):
        return None
    grid = torch.cat([step, low], dim=-1)
    return levels.to(torch.int32).reshape(out_features, in_features), grid


def pack_int4(model: nn.Module) -> int:
    """Give every linear layer of ``model`` (on the CPU, float32 weights) whose weights sit on a
    4-bit grid an :class:`Int4Linear` in its place; returns how many. Cast the model to
    bfloat16 afterwards (the grid is checked on the float32 weights)."""
    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.device.type != "cpu":
                continue
            found = int4_grid(child.weight.data)
            if found is None:
                continue
            levels, grid = found
            weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1)
            step, low = grid[..., 0], grid[..., 1]
            scales = torch.stack([step, low + 8 * step], dim=-1).transpose(0, 1).contiguous()
            setattr(parent, name, Int4Linear(child, weight, scales))
            packed += 1
    return packed


def int4_bytes(model: nn.Module) -> int:
    """Bytes the 4-bit copies take (beside the dense weights)."""
    return sum(
        m.int4_weight.numel() * m.int4_weight.element_size()
        + m.int4_scales.numel() * m.int4_scales.element_size()
        for m in model.modules()
        if isinstance(m, Int4Linear)
    )


def int4_layers(model: nn.Module) -> int:
    """How many linear layers of ``model`` have a 4-bit copy."""
    return sum(isinstance(m, Int4Linear) for m in model.modules())


def describe(model: nn.Module) -> str:
    count, size = int4_layers(model), int4_bytes(model) / 2**20
    return f"{count} linear layers with 4-bit copies ({size:.0f} MiB)"
