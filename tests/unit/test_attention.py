"""The CPU decode attention (workers/engine/attention.py) computes what SDPA computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workers.engine import attention
from workers.engine.attention import NAME, attend, few_query_attention, use_few_query_attention


@pytest.fixture
def products_in_float32(monkeypatch):
    """The two-product path in float32 too (it runs in half precision only), so that it can be
    held to SDPA exactly."""
    monkeypatch.setattr(attention, "few_query_dtype", lambda dtype: True)


class Layer(torch.nn.Module):
    num_key_value_groups = 3


def reference(query, key, value, mask):
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, enable_gqa=True)
    return out.transpose(1, 2)


def inputs(rows: int, queries: int, length: int, padding: list[int]):
    torch.manual_seed(rows * 100 + queries)
    # the cache is a view of larger buffers, as the engine's growing layers hand it over
    buffer = torch.randn(rows + 2, 3, length + 10, 16), torch.randn(rows + 2, 3, length + 10, 16)
    key, value = (b[:rows, :, 2 : 2 + length] for b in buffer)
    query = torch.randn(rows, 9, queries, 16)
    seen = torch.ones(rows, length, dtype=torch.bool)
    for row, pad in enumerate(padding):
        seen[row, :pad] = False  # left padding
    causal = torch.ones(queries, length, dtype=torch.bool).tril(length - queries)
    mask = (seen[:, None, :] & causal)[:, None]
    return query, key, value, mask


def test_a_padded_batch_matches_sdpa(products_in_float32):
    query, key, value, mask = inputs(4, 1, 40, padding=[0, 7, 0, 38])
    got, _ = few_query_attention(Layer(), query, key, value, mask)
    torch.testing.assert_close(got, reference(query, key, value, mask))
    # the products themselves take any number of queries, each seeing what its mask allows
    query, key, value, mask = inputs(4, 5, 40, padding=[0, 7, 0, 34])
    got = attend(query, key, value, mask[:, :, None]).transpose(1, 2)
    torch.testing.assert_close(got, reference(query, key, value, mask))


def test_without_a_mask_one_token_sees_every_key(products_in_float32):
    # transformers leaves the mask out where nothing is hidden: one new token, no padding
    query, key, value, _ = inputs(1, 1, 30, padding=[0])
    got, _ = few_query_attention(Layer(), query, key, value, None)
    torch.testing.assert_close(got, reference(query, key, value, None))
    # several new tokens (a speculative check, a few after a cached prefix) keep SDPA: it keeps
    # its scores in float32, so they read as a whole prefill does
    query, key, value, mask = inputs(1, 5, 5, padding=[0])
    got, _ = few_query_attention(Layer(), query.bfloat16(), key.bfloat16(), value.bfloat16(), None)
    expected = F.scaled_dot_product_attention(
        query.bfloat16(), key.bfloat16(), value.bfloat16(), is_causal=True, enable_gqa=True
    )
    torch.testing.assert_close(got, expected.transpose(1, 2))


def test_long_queries_and_bfloat16_stay_close_to_sdpa(products_in_float32):
    query, key, value, mask = inputs(2, 24, 40, padding=[0, 3])  # a prefill chunk: SDPA's own
    got, _ = few_query_attention(Layer(), query, key, value, mask)
    torch.testing.assert_close(got, reference(query, key, value, mask))
    query, key, value, mask = inputs(3, 1, 300, padding=[0, 20, 100])
    half = [t.to(torch.bfloat16) for t in (query, key, value)]
    got, _ = few_query_attention(Layer(), *half, mask)
    expected = reference(query, key, value, mask)
    assert got.dtype == torch.bfloat16
    assert (got.float() - expected).abs().max() < 0.05


def test_half_precision_takes_the_products_and_float32_keeps_sdpa():
    query, key, value, mask = inputs(3, 1, 50, padding=[0, 20, 10])
    got, _ = few_query_attention(Layer(), query, key, value, mask)
    torch.testing.assert_close(got, reference(query, key, value, mask))  # SDPA, its own way
    half = [t.to(torch.bfloat16) for t in (query, key, value)]
    got, _ = few_query_attention(Layer(), *half, mask)
    expected = attend(*half, mask[:, :, None]).transpose(1, 2)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_a_cpu_sdpa_model_is_switched_and_others_are_left_alone():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa",
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.inference_mode():
        before = model(ids).logits
        assert use_few_query_attention(model)
        assert model.config._attn_implementation == NAME
        cache = None
        steps = []
        for token in ids[0]:  # one token a pass: the switched path
            out = model(token.view(1, 1), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits[0, -1])
    torch.testing.assert_close(torch.stack(steps), before[0], atol=1e-5, rtol=1e-4)
    eager = LlamaForCausalLM(config.__class__(**config.to_dict(), attn_implementation="eager"))
    assert not use_few_query_attention(eager)
