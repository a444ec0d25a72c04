"""The lean decode forward (workers/engine/decoder.py) computes what transformers' forward does."""

from __future__ import annotations

import torch
from torch import nn

from tests.unit.test_int4 import grid_weights
from workers.engine.batch import BatchState, prefill_inputs
from workers.engine.decoder import Fused, LlamaDecoder, decoder_for
from workers.engine.kvcache import new_cache
from workers.int4 import MAX_ROWS, pack_int4

PROMPTS = [[5, 9, 23, 41, 7, 88, 3], [17, 2], [60, 61, 62, 63, 64]]


def tiny_llama(dtype: torch.dtype = torch.float32, on_grid: bool = False, kv_heads: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    if on_grid:  # as a Q4_1 GGUF's weights dequantize: every linear layer gets a 4-bit copy
        with torch.no_grad():
            for seed, layer in enumerate(m for m in model.model.modules() if type(m) is nn.Linear):
                layer.weight.copy_(grid_weights(*layer.weight.shape, seed))
        pack_int4(model)
    return model.to(dtype)


def decode_logits(forward, model, steps: int, draft: list[int] | None = None) -> torch.Tensor:
    """Prefill ``PROMPTS`` as one left-padded batch, then ``steps`` decode steps through
    ``forward`` (each row fed fixed tokens, so two forwards read the same); the logits of every
    step. With ``draft``, one last pass of the first row over
    its last token and the draft (a speculative check)."""
    inputs, mask = prefill_inputs(PROMPTS, 0, torch.device("cpu"))
    cache = new_cache(model.config)
    logits = []
    with torch.inference_mode():
        out = model(**inputs, past_key_values=cache, use_cache=True)
        state = BatchState(cache, mask, torch.tensor([11, 12, 13]))
        for i in range(steps):
            step = forward(**state.decode_inputs(), use_cache=True).logits[:, -1]
            logits.append(step.float())
            state.last_tokens = torch.tensor([20 + i, 40 + i, 90 + i])
        if draft is not None:
            state.select([0])
            tokens = torch.tensor([[int(state.last_tokens[0]), *draft]])
            positions = state.mask.sum(-1, keepdim=True) + torch.arange(tokens.shape[1])
            state.mask = torch.cat([state.mask, state.mask.new_ones(1, tokens.shape[1])], -1)
            out = forward(
                input_ids=tokens, attention_mask=state.mask, position_ids=positions,
                past_key_values=state.cache, use_cache=True,
            )  # fmt: skip
            logits.append(out.logits[0].float())
    return torch.cat(logits)


def test_decode_steps_and_a_draft_check_match_transformers_forward():
    model = tiny_llama()
    decoder = decoder_for(model)
    assert isinstance(decoder, LlamaDecoder)
    expected = decode_logits(model, model, steps=6, draft=[3, 4, 5])
    got = decode_logits(decoder, model, steps=6, draft=[3, 4, 5])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_4_bit_projections_run_joined_and_match_in_bfloat16():
    model = tiny_llama(torch.bfloat16, on_grid=True)
    decoder = decoder_for(model)
    assert all(isinstance(f, Fused) for f in decoder.qkv + decoder.gate_up)
    expected = decode_logits(model, model, steps=4, draft=[7, 8])
    got = decode_logits(decoder, model, steps=4, draft=[7, 8])
    torch.testing.assert_close(got, expected, atol=0.02, rtol=0.02)
    # one joined product gives each layer exactly its own product
    attention = model.model.layers[0].self_attn
    x = torch.randn(3, 128).bfloat16()
    q, k, v = decoder.qkv[0](x)
    for joined, layer in ((q, attention.q_proj), (k, attention.k_proj), (v, attention.v_proj)):
        torch.testing.assert_close(joined, layer(x), atol=0, rtol=0)
    # layers whose packed rows do not fill torch's tiles cannot be joined: one by one
    small = tiny_llama(torch.bfloat16, on_grid=True, kv_heads=1)
    assert decoder_for(small).qkv == [None, None]
    wide = torch.randn(MAX_ROWS + 1, 128).bfloat16()  # dense weights, layer by layer
    torch.testing.assert_close(decoder.qkv[0](wide)[0], attention.q_proj(wide))


def test_other_models_keep_their_own_forward():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert decoder_for(gpt2) is None
    biased = tiny_llama()
    biased.config.attention_bias = True
    assert decoder_for(biased) is None
