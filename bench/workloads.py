"""Workloads for the engine's prefix cache and chunked prefill, through the API.

    python -m bench.serving --workload shared-prefix   # or: long-prompts

``shared-prefix``: 32 streaming clients at once, each with the same ~1,500-token system prompt and
a short question of its own; time to first token p50 and p95 on a worker without the prefix cache
(``PREFIX_CACHE_MB=0``: cold, every prompt prefilled whole) and on one with it, warmed by one
request (warm). Target: warm TTFT p50 at most 0.3 x cold.

``long-prompts``: 4 streams run (short prompts, long replies); meanwhile 6,000-token prompts
arrive one after the other, each new (nothing to reuse). Prints the running streams' inter-token
gaps: median over their whole run and while no long prompt was served, p95 and the longest while
the long prompts were prefilled, and the long prompts' time to first token. Target: longest gap
at most 3 x the median.
"""

from __future__ import annotations

import threading
import time
import uuid

from bench.clients import call, chat_body, run_bodies
from bench.metrics import RequestTiming, percentile
from bench.stack import start_stack, stop_stack

WORDS = (
    "the queue holds every job until a worker takes it and the worker streams tokens back "
    "through redis while the front relays them as server sent events to the client"
).split()
QUESTIONS = [
    "What is a message queue?",
    "How do workers scale out?",
    "Why stream tokens?",
    "What does Redis store?",
]


def text_of(words: int, seed: str) -> str:
    """``words`` words of plain text that start with ``seed`` (so no two texts share a prefix)."""
    return seed + " " + " ".join(WORDS[i % len(WORDS)] for i in range(words))


def tokens_per_word(base: str, model: str) -> float:
    """Measured through the API: prompt tokens of a 1,000-word text, per word."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text_of(1000, uuid.uuid4().hex)}],
        "max_tokens": 1,
    }
    return call(base, "POST", "/v1/chat/completions", body)["usage"]["prompt_tokens"] / 1000


def chat(model: str, messages: list[dict], max_tokens: int) -> dict:
    return chat_body(model, messages, max_tokens, 0.7)


def special_tokens(model: str) -> list[int]:
    """The ids of the model's special tokens, from its tokenizer (loaded here, as the worker
    loads it)."""
    from transformers import AutoTokenizer

    from config.registry import load_registry, resolve_source
    from config.settings import Settings

    spec = load_registry(Settings.from_env().models_file)[model]
    gguf = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    return AutoTokenizer.from_pretrained(resolve_source(spec), **gguf).all_special_ids


def shared_prefix_round(base: str, model: str, system: str, clients: int) -> dict:
    """One request to warm up, then ``clients`` at once; their TTFT p50 and p95."""

    def body(i: int) -> dict:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} (client {i})"},
        ]
        return chat(model, messages, 16)

    run_bodies(base, [body(-1)])
    timings = run_bodies(base, [body(i) for i in range(clients)])
    ok = [t for t in timings if t.error is None and t.chunk_times]
    ttft = [t.chunk_times[0] - t.start for t in ok]
    return {
        "clients": clients,
        "errors": len(timings) - len(ok),
        "ttft_p50_s": round(percentile(ttft, 50), 3),
        "ttft_p95_s": round(percentile(ttft, 95), 3),
    }


def shared_prefix(model: str, port: int, clients: int = 32) -> None:
    results = {}
    system = None
    for label, env in (("cold (no prefix cache)", {"PREFIX_CACHE_MB": "0"}), ("warm", {})):
        print(f"starting a {model} worker, {label} ...", flush=True)
        stack = start_stack(model, port, name=f"prefix-{len(results)}", **env)
        base = f"http://127.0.0.1:{port}"
        try:
            if system is None:
                ratio = tokens_per_word(base, model)
                system = text_of(int(1500 / ratio), "You are the assistant of a queue service.")
                print(f"system prompt: about {int(1500 / ratio)} words, 1,500 tokens", flush=True)
            results[label] = shared_prefix_round(base, model, system, clients)
            print(f"  {label}: {results[label]}", flush=True)
        finally:
            stop_stack(*stack)
    cold, warm = results["cold (no prefix cache)"], results["warm"]
    print(f"\nshared 1,500-token system prompt, {clients} clients at once, 16 tokens each:")
    print(f"{'':>24} {'TTFT p50 s':>11} {'TTFT p95 s':>11} {'errors':>7}")
    for label, row in results.items():
        print(f"{label:>24} {row['ttft_p50_s']:>11} {row['ttft_p95_s']:>11} {row['errors']:>7}")
    print(f"warm / cold TTFT p50: {warm['ttft_p50_s'] / cold['ttft_p50_s']:.3f} (target <= 0.3)")


def long_prompts(model: str, port: int, streams: int = 4, prompts: int = 2) -> None:
    print(f"starting a {model} worker ...", flush=True)
    stack = start_stack(model, port, name="long-prompts")
    try:
        r = _long_round(f"http://127.0.0.1:{port}", model, streams, prompts)
    finally:
        stop_stack(*stack)
    print(f"  chunked prefill: {r}", flush=True)
    print(
        f"\n{streams} running streams while {prompts} prompts of ~6,000 tokens arrive one after "
        "the other; the streams' gaps between tokens (ms):"
    )
    print(
        f"{'':>18} {'median':>8} {'median alone':>13} {'p95 meanwhile':>14} {'longest':>8} "
        f"{'longest/alone':>14} {'long TTFT s':>15} {'alone s':>8} {'errors':>6}"
    )
    over_alone = round(r["longest_ms"] / r["median_alone_ms"], 2) if r["median_alone_ms"] else None
    print(
        f"{'chunked prefill':>18} {r['median_ms']:>8} {r['median_alone_ms']!s:>13} "
        f"{r['p95_meanwhile_ms']:>14} {r['longest_ms']:>8} {over_alone!s:>14} "
        f"{r['long_ttft_s']!s:>15} {r['alone_ttft_s']!s:>8} {r['errors']:>6}"
    )
    print(
        "median: over the streams' whole run; median alone: while no long prompt was being "
        "served; alone s: a long prompt's time to first token with nothing else running "
        "(targets: longest <= 4 x median alone, long TTFT <= 1.5 x alone)"
    )


def _long_round(base: str, model: str, streams: int, prompts: int) -> dict:
    ratio = tokens_per_word(base, model)
    words = int(6000 / ratio)
    runners: list[RequestTiming] = []
    short = [chat(model, [{"role": "user", "content": q}], 700) for q in QUESTIONS[:streams]]
    # With ignore_eos a small model goes on past its end with special tokens, which have no text
    # and so no chunk: a gap between chunks would then span several steps. Barred, every step
    # gives each stream a chunk, and a gap is the time between two steps.
    bias = {str(token): -100 for token in special_tokens(model)}
    short = [{**body, "logit_bias": bias} for body in short]
    # A long prompt alone first: the time to first token the one beside the streams is held to.
    alone = run_bodies(
        base, [chat(model, [{"role": "user", "content": text_of(words, "alone")}], 4)]
    )
    background = threading.Thread(target=lambda: runners.extend(run_bodies(base, short)))
    background.start()
    time.sleep(5)  # the streams are running
    window_start = time.perf_counter()
    longs = []
    for _ in range(prompts):
        body = chat(model, [{"role": "user", "content": text_of(words, uuid.uuid4().hex)}], 4)
        longs += run_bodies(base, [body])
    window_end = time.perf_counter()
    background.join()
    gaps, window, outside = [], [], []
    for timing in runners:
        for a, b in zip(timing.chunk_times, timing.chunk_times[1:], strict=False):
            gaps.append(b - a)
            (window if b >= window_start and a <= window_end else outside).append(b - a)
    median = percentile(gaps, 50)
    return {
        "median_ms": round(1000 * median, 1),
        "median_alone_ms": round(1000 * percentile(outside, 50), 1) if outside else None,
        "p95_meanwhile_ms": round(1000 * percentile(window, 95), 1),
        "longest_ms": round(1000 * max(window), 1),
        "ratio": round(max(window) / median, 2),
        "long_ttft_s": [round(t.chunk_times[0] - t.start, 2) for t in longs if t.chunk_times],
        "alone_ttft_s": round(alone[0].chunk_times[0] - alone[0].start, 2)
        if alone[0].chunk_times
        else None,
        "errors": len([t for t in runners + longs + alone if t.error]),
    }
