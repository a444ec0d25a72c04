"""Prompt-lookup speculative decoding on and off, the engine alone, one request at a time.

    python -m bench.speculation [--dtype bfloat16] [--max-tokens 160] [--draft 4]

Four workloads on the default model: a reply that copies its prompt (code shown again with
comments) and a free answer (the benchmark's usual prompt), each greedy and sampled
(temperature 0.7, seeded). Each runs with drafts off, then on; prints tokens/s of the whole
reply (prefill included), the draft tokens proposed and taken, and whether the greedy replies
are identical. (In bfloat16 a pass of several tokens rounds differently from a pass of one, so
a greedy reply may part from the other at a near-tie, as it may when its batch changes; in
float32 they are the same.)
"""

from __future__ import annotations

import argparse
import os
import time

from bench.metrics import RequestTiming
from bench.prompts import messages

CODE = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


def factorial(n):
    """Return n factorial."""
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
'''
PROMPTS = {
    "copies its prompt": [
        {"role": "user", "content": "Show this code again, with comments:\n\n" + CODE}
    ],
    "free answer": messages(0),
}


def run(engine, prompt: list[dict], draft: int, temperature: float, max_tokens: int) -> dict:
    """One request through a stopped engine, stepped on this thread."""
    engine.lookup_tokens = draft
    engine.drafted = engine.accepted = 0
    tokens: list[int] = []
    exchange = engine.io.exchange

    def recording(events, job_ids):
        tokens.extend(t for e in events if e["type"] == "token" for t in e["token_ids"])
        return exchange(events, job_ids)

    engine.io.exchange = recording
    job_id = f"speculation-{time.monotonic_ns()}"
    engine.io.timings[job_id] = RequestTiming(start=time.perf_counter())
    params = {"max_tokens": max_tokens, "temperature": temperature, "seed": 5}
    ticket = engine.submit({"id": job_id, "messages": prompt, "params": params})
    started = time.perf_counter()
    while not ticket.finished:
        engine.step()
    seconds = time.perf_counter() - started
    engine.io.exchange = exchange
    engine.io.timings.pop(job_id)
    return {
        "tokens": tokens,
        "tok_s": len(tokens) / seconds,
        "drafted": engine.drafted,
        "accepted": engine.accepted,
    }


def measure(model: str, max_tokens: int, draft: int) -> list[tuple]:
    from bench import engine_alone

    engine = engine_alone.load_default_engine(model)
    engine.stop()  # its steps run on this (passing) thread
    run(engine, messages(1), 0, 0, 8)  # warm-up
    rows = []
    for name, prompt in PROMPTS.items():
        for temperature in (0.0, 0.7):
            off = run(engine, prompt, 0, temperature, max_tokens)
            on = run(engine, prompt, draft, temperature, max_tokens)
            same = off["tokens"] == on["tokens"] if temperature == 0 else None
            rows.append((name, temperature, off, on, same))
    return rows


def main() -> None:
    from workers.loading import in_passing_thread

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--draft", type=int, default=4)
    args = parser.parse_args()
    os.environ["DTYPE"] = args.dtype
    rows = in_passing_thread(measure, args.model, args.max_tokens, args.draft)
    print(f"\n{args.model}, DTYPE={args.dtype}, one request, up to {args.max_tokens} tokens")
    print(
        f"{'workload':>18} {'temp':>5} {'off tok/s':>10} {'on tok/s':>9} {'on/off':>7} "
        f"{'drafted':>8} {'taken':>6} {'same greedy reply':>18}"
    )
    for name, temperature, off, on, same in rows:
        print(
            f"{name:>18} {temperature:>5} {off['tok_s']:>10.1f} {on['tok_s']:>9.1f} "
            f"{on['tok_s'] / off['tok_s']:>6.2f}x {on['drafted']:>8} {on['accepted']:>6} "
            f"{'-' if same is None else same!s:>18}"
        )


if __name__ == "__main__":
    main()
