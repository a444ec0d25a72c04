"""The serving benchmark: N concurrent streaming clients through the API, then the engine alone.

    python3 manage.py bench                       # brings up Redis + a worker + the API itself
    python3 manage.py bench --url http://host:8000 --skip-engine   # against a running stack

Each N runs --rounds times (default 3) and the median run is reported. ``--structured`` runs, per
N, streams with a ``json_schema`` response_format against as many free streams instead.
Prints per N: aggregate generated tokens/s, time to first token p50/p95, inter-token latency
p50/p95 and errors, for the API and for the engine alone, and the API's share of the engine.
Writes the results as JSON and a PNG chart (``--out``, default bench/results/).
``--workload shared-prefix`` and ``--workload long-prompts`` run the prefix cache's and chunked
prefill's workloads instead (see :mod:`bench.workloads`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench import clients, engine_alone
from bench.chart import draw
from bench.stack import ROOT, start_stack, stop_stack

COLUMNS = ("tokens_per_s", "ttft_p50_s", "ttft_p95_s", "itl_p50_ms", "itl_p95_ms", "errors")


# The story is longer than max_tokens allows: constrained replies run to max_tokens as the free
# ones do (ignore_eos), so both generate the same number of tokens and only the cost differs.
STORY = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "story": {"type": "string", "minLength": 5000},
    },
    "required": ["title", "story"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "story", "schema": STORY, "strict": True},
    }
}


def structured(base: str, args, sampling: tuple[int, float]) -> list[dict]:
    """Per N: free streams and json_schema streams, their rounds interleaved (so that both see
    the same machine), the median of each, and the constrained share of the free throughput."""
    rows = []
    for n in args.concurrency:
        free, constrained = [], []
        for _ in range(args.rounds):
            free.append(clients.run(base, args.model, n, *sampling, args.api_key))
            constrained.append(
                clients.run(base, args.model, n, *sampling, args.api_key, JSON_SCHEMA)
            )
        pair = [
            {**median_round(free), "mode": "free"},
            {**median_round(constrained), "mode": "json_schema"},
        ]
        share = 100 * pair[1]["tokens_per_s"] / pair[0]["tokens_per_s"]
        pair[1]["share_of_free_pct"] = round(share, 1)
        print(table(f"N={n}, free then json_schema:", pair), flush=True)
        print(f"  json_schema: {share:.1f} % of the free tokens/s", flush=True)
        rows += pair
    return rows


def median_round(rounds: list[dict]) -> dict:
    """The run with the median throughput (2 shared cores make single runs vary by ~10%)."""
    ordered = sorted(rounds, key=lambda r: r["tokens_per_s"])
    row = dict(ordered[len(ordered) // 2])
    row["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in rounds]
    row["errors"] = sum(r["errors"] for r in rounds)  # errors of every round count
    return row


def table(title: str, rows: list[dict]) -> str:
    lines = [title, "  N  " + "".join(f"{c:>14}" for c in COLUMNS)]
    for row in rows:
        cells = "".join(f"{'-' if row[c] is None else row[c]:>14}" for c in COLUMNS)
        lines.append(f"{row['concurrency']:>3}  {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running stack's base URL (default: start one)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per N; the median run (by tokens/s) is reported"
    )
    parser.add_argument("--api-key", default="EMPTY")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--structured",
        action="store_true",
        help="instead: N streams with a json_schema response_format against N free streams",
    )
    parser.add_argument(
        "--workload",
        choices=["standard", "shared-prefix", "long-prompts"],
        default="standard",
        help="shared-prefix, long-prompts: the prefix cache's and chunked prefill's workloads",
    )
    args = parser.parse_args()
    if args.workload != "standard":
        from bench import workloads
        from devtools.localstack import free_port

        shared = args.workload == "shared-prefix"
        run = workloads.shared_prefix if shared else workloads.long_prompts
        run(args.model, free_port())
        return

    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else (f"CPU ({os.cpu_count()} cores, {platform.machine()})")
    )
    result = {
        "model": args.model,
        "device": device,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "api": [],
        "engine": [],
    }
    sampling = (args.max_tokens, args.temperature)

    if not args.skip_api:
        stack = None
        base = args.url
        if base is None:
            from devtools.localstack import free_port

            port = free_port()
            print(f"starting Redis, a {args.model} worker and the API ...", flush=True)
            stack = start_stack(args.model, port)
            base = f"http://127.0.0.1:{port}"
        try:
            clients.run(base, args.model, 2, 8, args.temperature, args.api_key)  # warm-up
            if args.structured:
                result["structured"] = structured(base, args, sampling)
                args.skip_engine = True
                result["api"] = []
            for n in args.concurrency if not args.structured else []:
                row = median_round(
                    [
                        clients.run(base, args.model, n, *sampling, args.api_key)
                        for _ in range(args.rounds)
                    ]
                )
                result["api"].append(row)
                print(table(f"through the API, N={n}:", [row]), flush=True)
        finally:
            if stack:
                stop_stack(*stack)  # frees the CPU for the engine-alone run

    if not args.skip_engine:
        print(f"loading {args.model} for the engine-alone run ...", flush=True)
        engine = engine_alone.load_default_engine(args.model)
        try:
            engine_alone.run(engine, 2, 8, args.temperature)  # warm-up
            for n in args.concurrency:
                row = median_round(
                    [engine_alone.run(engine, n, *sampling) for _ in range(args.rounds)]
                )
                result["engine"].append(row)
                print(table(f"engine alone, N={n}:", [row]), flush=True)
        finally:
            engine.stop()

    print()
    print(
        f"{args.model} on {device}; {args.max_tokens} new tokens per request, "
        f"temperature {args.temperature}, streaming"
    )
    if result.get("structured"):
        print(
            table(
                "structured outputs through the API (free, then json_schema):", result["structured"]
            )
        )
        for row in result["structured"]:
            if "share_of_free_pct" in row:
                share = row["share_of_free_pct"]
                print(f"  N={row['concurrency']:>3}: json_schema at {share} % of free")
    if result["api"]:
        print(table("through the API (HTTP + Redis + Celery):", result["api"]))
    if result["engine"]:
        print(table("engine alone (no queue, no HTTP):", result["engine"]))
    if result["api"] and result["engine"]:
        engine_by_n = {r["concurrency"]: r for r in result["engine"]}
        print("the API's share of the engine's throughput:")
        for row in result["api"]:
            base_tps = engine_by_n.get(row["concurrency"], {}).get("tokens_per_s")
            if base_tps:
                share = 100 * row["tokens_per_s"] / base_tps
                row["share_of_engine_pct"] = round(share, 1)
                print(f"  N={row['concurrency']:>3}: {share:5.1f} %")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"serving-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {json_path}")
    if result["api"]:
        png_path = json_path.with_suffix(".png")
        draw(result, png_path)
        print(f"wrote {png_path}")


if __name__ == "__main__":
    main()
