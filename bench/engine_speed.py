"""The engine alone, per dtype: decode tokens/s at batch 1, 8 and 32, and what a decode step does.

    python -m bench.engine_speed [--configs float32 bfloat16 bfloat16+int4]
                                 [--concurrency 1 8 32] [--max-tokens 128] [--profile 1 32]

For each configuration (a dtype; ``+int4``: with the 4-bit copies of the GGUF's 4-bit weights,
see ``workers/int4.py``, ``INT4_WEIGHTS``) the default model is loaded as a worker loads it
(``DTYPE``, ``INT4_WEIGHTS``), then N requests go
to its engine at once (no Redis, no HTTP), each sampling ``--max-tokens`` tokens with EOS
ignored. ``decode tok/s`` counts the tokens after each request's first over the time from the
last first token to the end (the decode phase alone: prefill and joins left out); ``ms/step``
is one decode step of the whole batch. With ``--profile N``, torch.profiler records decode steps
of N running rows and prints the top operations by CPU time (the model's arithmetic, and what
is not).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench import engine_alone
from bench.metrics import RequestTiming
from bench.prompts import messages
from workers.loading import in_passing_thread


def decode_rate(engine, concurrency: int, max_tokens: int) -> dict:
    """Run ``concurrency`` requests at once; tokens/s and ms per step once all have joined."""
    io = engine.io
    summary_timings = {}
    tickets = []
    for i in range(concurrency):
        job_id = f"speed-{concurrency}-{i}-{time.monotonic_ns()}"
        io.timings[job_id] = RequestTiming(start=time.perf_counter())
        params = {"max_tokens": max_tokens, "temperature": 0.7, "ignore_eos": True}
        tickets.append(engine.submit({"id": job_id, "messages": messages(i), "params": params}))
    for ticket in tickets:
        ticket.wait()
    summary_timings.update(io.timings)
    io.timings.clear()
    io.ended.clear()
    timings = list(summary_timings.values())
    joined = max(t.chunk_times[0] for t in timings)
    end = max(t.end for t in timings)
    after = [
        sum(n for c, n in zip(t.chunk_times, t.chunk_tokens, strict=True) if c > joined)
        for t in timings
    ]
    steps = max(after)  # a row's tokens after the last join: one a step
    after = sum(after)
    seconds = end - joined
    return {
        "tok_s": after / seconds if seconds else 0.0,
        "ms_step": 1000 * seconds / steps if steps else 0.0,
        "ttft_ms": 1000 * min(t.chunk_times[0] - t.start for t in timings),
    }


def profile_steps(engine, rows: int, steps: int, top: int = 20) -> str:
    """Top operations of ``steps`` decode steps of ``rows`` running rows (the engine's loop is
    stopped: its steps run on this thread, where the profiler sees them)."""
    from torch.profiler import ProfilerActivity, profile

    engine.stop()
    for i in range(rows):
        job_id = f"profile-{rows}-{i}-{time.monotonic_ns()}"
        engine.io.timings[job_id] = RequestTiming(start=time.perf_counter())
        params = {"max_tokens": steps + 40, "temperature": 0.7, "ignore_eos": True}
        engine.submit({"id": job_id, "messages": messages(i), "params": params})
    while len(engine._rows) < rows or engine._scheduler.waiting():
        engine.step()
    for _ in range(8):  # warm
        engine.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            engine.step()
    engine._fail_all("profiled", "the profile is done")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--configs", nargs="+", default=["float32", "bfloat16", "bfloat16+int4"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--profile", type=int, nargs="*", default=[])
    args = parser.parse_args()

    rows = []
    for dtype in args.configs:
        os.environ["DTYPE"] = dtype.removesuffix("+int4")
        os.environ["INT4_WEIGHTS"] = "auto" if dtype.endswith("+int4") else "off"
        engine = engine_alone.load_default_engine(args.model)
        decode_rate(engine, 2, 8)  # warm-up
        for n in args.concurrency:
            rows.append((dtype, n, decode_rate(engine, n, args.max_tokens)))
            print(dtype, n, rows[-1][2], flush=True)
        for n in args.profile:
            print(f"\n{dtype}, {n} rows: top operations of the decode steps")
            # On a thread that ends: see workers.loading.in_passing_thread (a profile on this
            # thread would leave it an OpenMP pool that slows every engine after it).
            print(in_passing_thread(profile_steps, engine, n, 16))
        engine.stop()
        del engine

    print(
        f"\n{args.model}, engine alone, {args.max_tokens} sampled tokens each, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'config':>14} {'N':>4} {'decode tok/s':>13} {'ms/step':>8} {'TTFT ms':>8}")
    for dtype, n, r in rows:
        print(f"{dtype:>14} {n:>4} {r['tok_s']:>13.1f} {r['ms_step']:>8.1f} {r['ttft_ms']:>8.0f}")


if __name__ == "__main__":
    main()
