"""4-bit copies of linear layers whose weights sit on a 4-bit grid (workers/int4.py)."""

import torch
from torch import nn

from workers.int4 import (
    MAX_ROWS,
    MAX_ROWS_8,
    Int4Linear,
    Int8Linear,
    int4_grid,
    int8_grid,
    pack_int4,
)


def grid_weights(rows: int, columns: int, seed: int = 0) -> torch.Tensor:
    """Weights as a Q4_1 GGUF's dequantize: per block of 32, q * d + m with q in 0..15 (the
    block's least and greatest levels used, as llama.cpp's quantizer makes them)."""
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 16, (rows, columns // 32, 32), generator=generator)
    levels[..., 0], levels[..., 1] = 0, 15
    # steps kept off zero: a block whose step is near 0 is below float32's rounding, off-grid
    d = (0.1 + torch.rand(rows, columns // 32, 1, generator=generator)) * 0.02
    m = -torch.rand(rows, columns // 32, 1, generator=generator) * 0.1
    return (levels * d + m).reshape(rows, columns).float()


def test_a_4_bit_grid_is_found_exactly_and_ordinary_weights_are_left_alone():
    weight = grid_weights(64, 128)
    levels, grid = int4_grid(weight)
    rebuilt = levels.reshape(64, 4, 32) * grid[..., :1] + grid[..., 1:]
    assert torch.allclose(rebuilt.reshape(64, 128), weight, atol=1e-7)
    assert int4_grid(torch.randn(64, 128)) is None
    assert int4_grid(grid_weights(64, 128) + 1e-3 * torch.randn(64, 128)) is None


def test_packed_layers_compute_what_the_dense_ones_do():
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 32, bias=False), nn.Linear(32, 8))
    with torch.no_grad():
        model[0].weight.copy_(grid_weights(64, 128, 1))
        model[1].weight.copy_(grid_weights(32, 64, 2))
        model[2].weight.normal_()  # ordinary weights: no copy
    dense = [layer.weight.clone() for layer in model]
    assert pack_int4(model) == 2
    assert [type(layer) for layer in model] == [Int4Linear, Int4Linear, nn.Linear]
    model = model.to(torch.bfloat16)
    for rows in (1, MAX_ROWS, MAX_ROWS + 1):  # 4-bit path, then the dense one
        x = torch.randn(rows, 128)
        expected = x @ dense[0].T + model[0].bias.float()
        got = model[0](x.bfloat16()).float()
        assert got.shape == (rows, 64)
        assert (got - expected).abs().max() < 0.02 * expected.abs().max()
    # Leading dimensions are kept, as nn.Linear keeps them.
    assert model[1](torch.randn(2, 3, 64).bfloat16()).shape == (2, 3, 32)


def q8_weights(rows: int, columns: int, seed: int = 0) -> torch.Tensor:
    """Weights as a Q8_0 GGUF's dequantize: per block of 32, q * d with q in -127..127 (the
    block's largest magnitude at 127, as llama.cpp's quantizer makes it)."""
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(-127, 128, (rows, columns // 32, 32), generator=generator)
    levels[..., 0] = 127
    d = (0.1 + torch.rand(rows, columns // 32, 1, generator=generator)) * 0.002
    return (levels * d).reshape(rows, columns).float()


def test_8_bit_weights_run_as_two_4_bit_planes():
    weight = q8_weights(64, 128)
    levels, step = int8_grid(weight)
    assert int(levels.min()) >= -127 and int(levels.max()) == 127
    torch.testing.assert_close(
        (levels.reshape(64, 4, 32) * step[..., None]).reshape(64, 128), weight
    )
    assert int8_grid(weight + 1e-4 * torch.randn(64, 128)) is None
    model = nn.Sequential(nn.Linear(128, 64, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    assert pack_int4(model) == 1 and type(model[0]) is Int8Linear
    model = model.to(torch.bfloat16)
    for rows in (1, MAX_ROWS_8, MAX_ROWS_8 + 1):  # the planes, then the dense weights
        x = torch.randn(rows, 128)
        expected = x @ weight.T
        got = model[0](x.bfloat16()).float()
        assert (got - expected).abs().max() < 0.01 * expected.abs().max()
