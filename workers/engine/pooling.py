"""Embeddings from a causal LM: the mean of its last hidden states over each input's tokens,
scaled to unit length. This is what FastChat's model workers return for ``/v1/embeddings`` on a
chat model, so a chat model's worker answers embedding requests too."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from workers.engine.batch import prefill_inputs


@torch.inference_mode()
def mean_pooled(
    model: Any,
    inputs: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    forward_kwargs: list[dict[str, Any]] | None = None,
) -> torch.Tensor:
    """Unit-length float32 vectors ``[len(inputs), hidden size]``, ``batch_size`` inputs per
    forward pass. Inputs are left-padded with positions from the mask, so an input's vector does
    not depend on what it is batched with. ``forward_kwargs`` holds, per batch, extra arguments
    for the forward pass (a PEFT model's ``adapter_names``)."""
    device = next(model.parameters()).device
    vectors = []
    for number, start in enumerate(range(0, len(inputs), batch_size)):
        batch, mask = prefill_inputs(inputs[start : start + batch_size], pad_id, device)
        extra = forward_kwargs[number] if forward_kwargs else {}
        # One logit per row is the least the forward pass computes; only hidden states are used.
        out = model(**batch, **extra, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        hidden = out.hidden_states[-1].float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        vectors.append(F.normalize(summed / weights.sum(dim=1), p=2, dim=-1))
    return torch.cat(vectors)
