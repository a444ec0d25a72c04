"""Draw a benchmark result as a PNG: throughput and time to first token per concurrency."""

from __future__ import annotations

from pathlib import Path


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    api = {r["concurrency"]: r for r in result["api"]}
    engine = {r["concurrency"]: r for r in result.get("engine", [])}
    levels = sorted(api)
    x = range(len(levels))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    left.bar(
        [i - width / 2 for i in x],
        [api[n]["tokens_per_s"] for n in levels],
        width,
        label="through the API (HTTP + queue)",
    )
    if engine:
        left.bar(
            [i + width / 2 for i in x],
            [engine[n]["tokens_per_s"] for n in levels],
            width,
            label="engine alone",
        )
    left.set_xticks(list(x), [str(n) for n in levels])
    left.set_xlabel("concurrent streaming clients")
    left.set_ylabel("generated tokens / s (aggregate)")
    left.legend()
    left.set_title("Throughput")
    for label, rows in (("API", api), ("engine", engine)):
        if rows:
            right.plot(
                levels, [rows[n]["ttft_p50_s"] for n in levels], marker="o", label=f"{label} p50"
            )
            right.plot(
                levels,
                [rows[n]["ttft_p95_s"] for n in levels],
                marker="x",
                linestyle="--",
                label=f"{label} p95",
            )
    right.set_xscale("log", base=2)
    right.set_xticks(levels, [str(n) for n in levels])
    right.set_xlabel("concurrent streaming clients")
    right.set_ylabel("seconds")
    right.set_title("Time to first token")
    right.legend()
    fig.suptitle(
        f"{result['model']} on {result['device']}, {result['max_tokens']} new tokens, "
        f"temperature {result['temperature']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
