"""The Batch API against interactive traffic on the same worker.

    python -m bench.batch [--lines 1000] [--max-tokens 64] [--load-clients 4] [--model NAME]

Starts Redis, one worker of the model and a front. Then:

1. the batch alone: ``--lines`` chat requests (``--max-tokens`` each, ignore_eos) as one batch,
   from its creation to ``completed``: lines/s and tokens/s;
2. the same requests sent interactively, as many at once as the engine runs (its batch size):
   tokens/s, to which the batch's throughput is compared;
3. a steady interactive load (``--load-clients`` streaming clients, back to back, 16 tokens each)
   for the time the batch took, first alone, then beside the same batch: the interactive
   requests' time to first token p50 and p95, and the batch's throughput meanwhile.

Targets on a 2-core CPU: the batch at least 90% of the interactive throughput; interactive TTFT
p50 beside the batch at most 1.5 times its value alone.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from bench.clients import _one, call
from bench.metrics import RequestTiming, percentile
from bench.prompts import messages
from bench.stack import start_stack, stop_stack


def body(i: int, model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": messages(i),
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "ignore_eos": True,
    }


def upload(base: str, content: bytes) -> str:
    boundary = "benchboundary"
    parts = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return call(base, "POST", "/v1/files", raw=parts, headers=headers)["id"]


def run_batch(base: str, model: str, lines: int, max_tokens: int) -> dict:
    content = "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body(i, model, max_tokens),
            }
        )
        + "\n"
        for i in range(lines)
    ).encode()
    file_id = upload(base, content)
    started = time.perf_counter()
    batch = call(
        base,
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.5)
        batch = call(base, "GET", f"/v1/batches/{batch['id']}")
    wall = time.perf_counter() - started
    counts = batch["request_counts"]
    return {
        "status": batch["status"],
        "lines": counts["completed"],
        "failed": counts["failed"],
        "wall_s": round(wall, 1),
        "lines_per_s": round(counts["completed"] / wall, 2),
        "tokens_per_s": round(counts["completed"] * max_tokens / wall, 1),
    }


def run_interactive(base: str, model: str, lines: int, max_tokens: int, concurrency: int) -> dict:
    timings: list[RequestTiming] = []
    lock = threading.Lock()
    next_line = [0]

    def client() -> None:
        while True:
            with lock:
                if next_line[0] >= lines:
                    return
                i = next_line[0]
                next_line[0] += 1
            timing = RequestTiming(start=time.perf_counter())
            payload = {
                **body(i, model, max_tokens),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            _one(base, payload, timing, "EMPTY")
            with lock:
                timings.append(timing)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    tokens = sum(t.tokens for t in timings if t.error is None)
    return {
        "lines": sum(t.error is None for t in timings),
        "wall_s": round(wall, 1),
        "tokens_per_s": round(tokens / wall, 1),
    }


def steady_load(base: str, model: str, clients: int, seconds: float) -> dict:
    timings: list[RequestTiming] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(c: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            timing = RequestTiming(start=time.perf_counter())
            payload = {**body(c * 1000 + i, model, 16), "stream": True}
            _one(base, payload, timing, "EMPTY")
            with lock:
                timings.append(timing)
            i += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ttft = [t.chunk_times[0] - t.start for t in timings if t.error is None and t.chunk_times]
    return {
        "requests": len(ttft),
        "errors": sum(t.error is not None for t in timings),
        "ttft_p50_s": round(percentile(ttft, 50), 3),
        "ttft_p95_s": round(percentile(ttft, 95), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--load-clients", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32, help="the engine's batch size")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()

    from devtools.localstack import free_port

    port = free_port()
    print(f"starting Redis, a {args.model} worker and a front ...", flush=True)
    stack = start_stack(args.model, port, "batch", MAX_QUEUED_JOBS="2000")
    base = f"http://127.0.0.1:{port}"
    try:
        call(base, "POST", "/v1/chat/completions", {**body(0, args.model, 4)})  # warm-up
        alone = run_batch(base, args.model, args.lines, args.max_tokens)
        print(f"1. the batch alone: {alone}", flush=True)
        interactive = run_interactive(
            base, args.model, args.lines, args.max_tokens, args.concurrency
        )
        print(
            f"2. the same requests interactively, {args.concurrency} at once: {interactive}",
            flush=True,
        )
        seconds = min(alone["wall_s"], 120)
        quiet = steady_load(base, args.model, args.load_clients, seconds)
        print(
            f"3a. {args.load_clients} interactive clients alone for {seconds:g} s: {quiet}",
            flush=True,
        )
        result: dict = {}
        batch_thread = threading.Thread(
            target=lambda: result.update(
                batch=run_batch(base, args.model, args.lines, args.max_tokens)
            )
        )
        batch_thread.start()
        time.sleep(5)  # the batch fills the engine first
        busy = steady_load(base, args.model, args.load_clients, seconds)
        batch_thread.join()
        print(f"3b. the same clients beside the batch: {busy}", flush=True)
        print(f"    the batch meanwhile: {result['batch']}", flush=True)
    finally:
        stop_stack(*stack)

    share = 100 * alone["tokens_per_s"] / interactive["tokens_per_s"]
    ratio = busy["ttft_p50_s"] / quiet["ttft_p50_s"]
    print(f"\n{args.model}, {args.lines} chat lines of {args.max_tokens} tokens:")
    print(
        f"  batch alone:        {alone['tokens_per_s']:7.1f} tokens/s, "
        f"{alone['lines_per_s']} lines/s ({alone['wall_s']} s)"
    )
    print(
        f"  interactive, N={args.concurrency}: {interactive['tokens_per_s']:7.1f} tokens/s "
        f"({interactive['wall_s']} s)"
    )
    print(f"  batch / interactive: {share:.1f} % (target >= 90 %)")
    print(
        f"  interactive TTFT p50 / p95: alone {quiet['ttft_p50_s']} / {quiet['ttft_p95_s']} s, "
        f"beside the batch {busy['ttft_p50_s']} / {busy['ttft_p95_s']} s"
    )
    print(f"  TTFT p50 beside the batch / alone: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
