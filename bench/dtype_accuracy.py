"""How far bfloat16 moves the model's answers from float32's, on the benchmark's prompts.

    python -m bench.dtype_accuracy [--model smollm2-135m-instruct] [--prompts 16] [--tokens 64]

For each prompt, float32 answers greedily; then (1) bfloat16 answers greedily too, and the table
says how many tokens the two share before they first differ, and (2) bfloat16 reads float32's
answer token by token (teacher forcing), and the table says how often its most likely next token
is float32's, and how far its log-probability of float32's token is from float32's own (the
answer read one token a pass, as decode steps read it).

bfloat16 keeps 8 bits of mantissa: answers of a greedy small model drift apart after a while
(a near-tie flips), while each step's choice agrees almost always. That per-step agreement, not
whole-answer identity, is what says the model still computes the same thing.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.prompts import messages


def load(model: str, dtype: torch.dtype):
    from pathlib import Path

    from config.registry import load_registry, resolve_source
    from config.settings import Settings
    from workers.loading import _load_causal_lm

    settings = Settings.from_env()
    spec = load_registry(settings.models_file)[model]
    cache = Path(settings.model_cache_dir)
    return _load_causal_lm(spec, resolve_source(spec), torch.device("cpu"), dtype, cache)


@torch.inference_mode()
def greedy(model, prompt: list[int], tokens: int) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


@torch.inference_mode()
def forced(model, prompt: list[int], answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's log-probabilities of ``answer``'s tokens, and its own top choice at each:
    the prompt in one pass, then the answer one token a pass, as the engine's decode steps run
    (through the worker's attention, see workers/engine/attention.py)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out = model(torch.tensor([prompt]), past_key_values=cache, use_cache=True)
    steps = [out.logits[0, -1]]
    for token in answer[:-1]:
        out = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        steps.append(out.logits[0, -1])
    logprobs = torch.log_softmax(torch.stack(steps).float(), dim=-1)
    return logprobs.gather(1, torch.tensor(answer)[:, None])[:, 0], logprobs.argmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    full, tokenizer = load(args.model, torch.float32)
    half, _ = load(args.model, torch.bfloat16)
    shared, identical, agree, positions, diffs = [], 0, 0, 0, []
    started = time.monotonic()
    for i in range(args.prompts):
        chat = messages(i)
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        reference = greedy(full, prompt, args.tokens)
        answer = greedy(half, prompt, args.tokens)
        pairs = enumerate(zip(reference, answer, strict=True))
        same = next((j for j, (a, b) in pairs if a != b), None)
        shared.append(args.tokens if same is None else same)
        identical += same is None
        ref_logprobs, _ = forced(full, prompt, reference)
        half_logprobs, half_top = forced(half, prompt, reference)
        agree += int((half_top == torch.tensor(reference)).sum())
        positions += len(reference)
        diffs.append((half_logprobs - ref_logprobs).abs())
    diffs = torch.cat(diffs)
    shared.sort()
    print(f"{args.model}, {args.prompts} prompts, {args.tokens} greedy tokens each")
    print(f"  greedy answers identical to float32's:        {identical} of {args.prompts}")
    print(
        f"  tokens shared before the first difference:   median {shared[len(shared) // 2]}, "
        f"least {shared[0]}"
    )
    print(
        f"  teacher-forced top-1 agreement with float32: {agree / positions:.2%} "
        f"of {positions} steps"
    )
    print(
        f"  |logprob(bf16) - logprob(fp32)| of float32's token: mean {diffs.mean():.4f}, "
        f"p99 {diffs.quantile(0.99):.4f}, max {diffs.max():.4f}"
    )
    print(f"  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
