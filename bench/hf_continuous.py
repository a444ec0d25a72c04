"""Our engine against transformers' own continuous batching, on the same model and workload.

    python -m bench.hf_continuous [--concurrency 1 8 32] [--max-tokens 128]

Both get N prompts at once, sample at the same temperature and ignore EOS, so both generate
exactly N x max_tokens tokens; prints aggregate tokens/s and time to first token for each.
"""

from __future__ import annotations

import argparse
import time

from bench import engine_alone
from bench.metrics import percentile
from bench.prompts import messages


def hf_run(model, tokenizer, n: int, max_tokens: int, temperature: float) -> dict:
    from transformers import GenerationConfig

    prompts = [
        tokenizer(
            tokenizer.apply_chat_template(messages(i), add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
        for i in range(n)
    ]
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=1.0,
        top_k=0,
        eos_token_id=-1,
        pad_token_id=tokenizer.pad_token_id,
    )
    started = time.perf_counter()
    outputs = model.generate_batch(prompts, generation_config=config, record_timestamps=True)
    wall = time.perf_counter() - started
    tokens = sum(len(o.generated_tokens) for o in outputs.values())
    ttft = [o.timestamps[0] - started for o in outputs.values() if o.timestamps]
    return {
        "concurrency": n,
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_s": round(percentile(ttft, 50), 3) if ttft else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()

    engine = engine_alone.load_default_engine(args.model)
    engine_alone.run(engine, 2, 8, args.temperature)  # warm-up
    ours = [
        engine_alone.run(engine, n, args.max_tokens, args.temperature) for n in args.concurrency
    ]
    engine.stop()
    hf_run(engine.model, engine.tokenizer, 2, 8, args.temperature)  # warm-up
    theirs = [
        hf_run(engine.model, engine.tokenizer, n, args.max_tokens, args.temperature)
        for n in args.concurrency
    ]
    print(f"\n{args.model}, {args.max_tokens} new tokens each, temperature {args.temperature}")
    print(
        f"{'N':>4} {'ours tok/s':>12} {'ours TTFT p50':>14} {'HF CB tok/s':>12} "
        f"{'HF TTFT p50':>12} {'ours / HF':>10}"
    )
    for a, b in zip(ours, theirs, strict=True):
        print(
            f"{a['concurrency']:>4} {a['tokens_per_s']:>12} {a['ttft_p50_s']:>14} "
            f"{b['tokens_per_s']:>12} {b['ttft_p50_s']!s:>12} "
            f"{a['tokens_per_s'] / b['tokens_per_s']:>9.2f}x"
        )
    print("target at N = 32: ours / HF >= 1.8")


if __name__ == "__main__":
    main()
