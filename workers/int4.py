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

8-bit weights (GGUF's Q8_0: per block of 32, ``q * d`` with ``q`` in -127..127, as SmolLM2's
tied embedding and output head are stored) are kept the same way as two 4-bit planes, ``q = 16
hi + lo``: one product over each, summed, reads a byte a weight instead of bfloat16's two (the
output head, one row: 4.7 ms in bfloat16, 2.1 ms as two planes). Each plane is a 4-bit grid:
``hi`` with scale ``16 d`` and zero 0, ``lo`` with scale ``d`` and zero ``8 d``. Past
:data:`MAX_ROWS_8` rows the two products cost more than the dense one, which then runs.
"""

from __future__ import annotations

import torch
from torch import nn

GROUP = 32  # weights per block (GGUF's Q4_0 and Q4_1 blocks)
MAX_ROWS = 16  # rows up to which the 4-bit weights are faster (the two times meet at 16)
MAX_ROWS_8 = 4  # the same for two 4-bit planes (an 8-bit weight)
TOLERANCE = 1e-5  # of a block's range: float32 rounding, not a coarser grid


class Int4Linear(nn.Linear):
    """An ``nn.Linear`` whose calls with few rows read 4-bit weights (see the module's text)."""

    int4_weight: torch.Tensor  # buffers, registered in __init__
    int4_scales: torch.Tensor

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


class Int8Linear(nn.Linear):
    """An ``nn.Linear`` whose calls with few rows read its 8-bit weights as two 4-bit planes."""

    high_weight: torch.Tensor  # buffers, registered in __init__
    high_scales: torch.Tensor
    low_weight: torch.Tensor
    low_scales: torch.Tensor

    def __init__(self, linear: nn.Linear, planes: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        for name, (packed, scales) in zip(("high", "low"), planes, strict=True):
            self.register_buffer(f"{name}_weight", packed, persistent=False)
            self.register_buffer(f"{name}_scales", scales, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows > MAX_ROWS_8 or x.dtype != self.low_scales.dtype:
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        product = torch.ops.aten._weight_int4pack_mm_for_cpu
        out = product(flat, self.high_weight, GROUP, self.high_scales)
        out += product(flat, self.low_weight, GROUP, self.low_scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def int8_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``weight`` ([out, in], float32) as 8-bit levels ([out, in], int32, -127..127) and a step
    per block ([out, in / GROUP]) such that each weight is ``q * d``; None unless every block
    sits exactly (to float32 rounding) on such a grid, as a dequantized Q8_0 tensor does."""
    out_features, in_features = weight.shape
    if in_features % GROUP or weight.dtype != torch.float32:
        return None
    blocks = weight.reshape(out_features, in_features // GROUP, GROUP)
    peak = blocks.abs().amax(dim=-1, keepdim=True)
    step = peak / 127
    levels = (blocks / step.clamp(min=torch.finfo(torch.float32).tiny)).round()
    if bool(((levels * step - blocks).abs() > TOLERANCE * peak).any()):
        return None
    return levels.to(torch.int32).reshape(out_features, in_features), step[..., 0]


def _plane(levels: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor):
    """One packed 4-bit plane (levels 0..15) whose weights are ``(level - 8) * scale + zero``."""
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1)
    return packed, torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()


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
    4-bit grid an :class:`Int4Linear` in its place, and one on an 8-bit grid an
    :class:`Int8Linear`; returns how many. Cast the model to bfloat16 afterwards (the grids are
    checked on the float32 weights)."""
    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.device.type != "cpu":
                continue
            replacement = _int4_linear(child) or _int8_linear(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                packed += 1
    return packed


def _int4_linear(linear: nn.Linear) -> Int4Linear | None:
    found = int4_grid(linear.weight.data)
    if found is None:
        return None
    levels, grid = found
    step, low = grid[..., 0], grid[..., 1]
    weight, scales = _plane(levels, step, low + 8 * step)
    return Int4Linear(linear, weight, scales)


def _int8_linear(linear: nn.Linear) -> Int8Linear | None:
    found = int8_grid(linear.weight.data)
    if found is None:
        return None
    levels, step = found
    high, low = torch.div(levels, 16, rounding_mode="floor"), torch.remainder(levels, 16)
    planes = [_plane(high + 8, 16 * step, torch.zeros_like(step)), _plane(low, step, 8 * step)]
    return Int8Linear(linear, planes)


def int4_bytes(model: nn.Module) -> int:
    """Bytes the 4-bit copies (and 8-bit ones, as 4-bit planes) take beside the dense weights."""
    return sum(
        buffer.numel() * buffer.element_size()
        for m in model.modules()
        if isinstance(m, (Int4Linear, Int8Linear))
        for buffer in m.buffers(recurse=False)
    )


def int4_layers(model: nn.Module) -> int:
    """How many linear layers of ``model`` have a 4-bit (or 8-bit as 4-bit planes) copy."""
    return sum(isinstance(m, (Int4Linear, Int8Linear)) for m in model.modules())


def describe(model: nn.Module) -> str:
    eight = sum(isinstance(m, Int8Linear) for m in model.modules())
    count, size = int4_layers(model), int4_bytes(model) / 2**20
    return f"{count} linear layers with 4-bit copies, {eight} of them 8-bit ({size:.0f} MiB)"
