"""Load: one front holding many concurrent streaming requests for a while.

    python -m bench.load [--clients 200] [--seconds 60] [--max-tokens 32] [--url URL --redis URL]

Each client streams chat completions back to back until the time is up (requests still running
then are finished and counted). Prints completed streams, dropped streams (no [DONE] or an error
frame), errors, the most streams open at once, and Redis connections sampled every second (all
clients, and pub/sub subscribers) to show they stay a small constant.
"""

from __future__ import annotations

import argparse
import threading
import time

import redis

from bench.clients import _one
from bench.metrics import RequestTiming
from bench.prompts import messages
from bench.stack import start_stack, stop_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--url", help="a running front (with --redis)")
    parser.add_argument("--redis", help="the Redis of that running stack")
    args = parser.parse_args()

    stack = None
    if args.url:
        base, redis_url = args.url, args.redis
    else:
        from devtools.localstack import free_port

        port = free_port()
        print(f"starting Redis, a {args.model} worker and one front ...", flush=True)
        # Over capacity on purpose: let the queue hold every client rather than answer 429.
        stack = start_stack(args.model, port, "load", MAX_QUEUED_JOBS="1000")
        base, redis_url = f"http://127.0.0.1:{port}", stack[0].url
    client = redis.Redis.from_url(redis_url)
    timings: list[RequestTiming] = []
    lock = threading.Lock()
    open_now = [0, 0]  # current, peak
    deadline = time.monotonic() + args.seconds

    def run_client(i: int) -> None:
        body = {
            "model": args.model,
            "messages": messages(i),
            "max_tokens": args.max_tokens,
            "temperature": 0.7,
            "stream": True,
            "ignore_eos": True,
        }
        while time.monotonic() < deadline:
            timing = RequestTiming(start=time.perf_counter())
            with lock:
                open_now[0] += 1
                open_now[1] = max(open_now)
            _one(base, body, timing, "EMPTY")
            with lock:
                open_now[0] -= 1
                timings.append(timing)

    samples = []
    try:
        threads = [threading.Thread(target=run_client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            clients = client.client_list()
            subscribers = [c.get("name") or "unnamed" for c in clients if int(c.get("sub", 0))]
            front = sum(1 for c in clients if (c.get("name") or "").startswith("llm-front"))
            samples.append((len(clients), front, sorted(subscribers)))
            time.sleep(1)
    finally:
        if stack:
            stop_stack(*stack)
    errors = [t.error for t in timings if t.error]
    dropped = [e for e in errors if "finish_reason" in e or "Error" in e]
    totals, fronts = [s[0] for s in samples], [s[1] for s in samples]
    subs = [len(s[2]) for s in samples]
    subscriber_kinds = sorted({", ".join(s[2]) for s in samples})
    print(
        f"\n{args.clients} clients streaming for {args.seconds:g} s through one front "
        f"({args.max_tokens} tokens per request):"
    )
    print(f"  streams completed:        {len(timings) - len(errors)}")
    print(f"  streams dropped:          {len(dropped)}")
    print(f"  errors:                   {len(errors)} {sorted(set(errors))[:3]}")
    print(f"  most streams open at once: {open_now[1]}")
    print(
        f"  Redis connections (all clients of Redis, sampled each second): "
        f"min {min(totals)}, max {max(totals)}"
    )
    print(f"  the front's own (named llm-front*): min {min(fronts)}, max {max(fronts)}")
    print(
        f"  Redis pub/sub subscriber connections: min {min(subs)}, max {max(subs)} "
        f"(seen: {' | '.join(subscriber_kinds)})"
    )


if __name__ == "__main__":
    main()
