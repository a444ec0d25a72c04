"""Per-request timings and their summary: throughput, time to first token, inter-token latency."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestTiming:
    start: float
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)  # tokens per chunk, where known
    tokens: int = 0
    error: str | None = None

    @property
    def end(self) -> float:
        return self.chunk_times[-1] if self.chunk_times else self.start


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summarize(timings: list[RequestTiming], concurrency: int) -> dict:
    ok = [t for t in timings if t.error is None and t.chunk_times]
    ttft = [t.chunk_times[0] - t.start for t in ok]
    itl = [b - a for t in ok for a, b in zip(t.chunk_times, t.chunk_times[1:], strict=False)]
    tokens = sum(t.tokens for t in ok)
    wall = (max(t.end for t in ok) - min(t.start for t in timings)) if ok else 0.0
    return {
        "concurrency": concurrency,
        "requests": len(timings),
        "errors": len(timings) - len(ok),
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
        "ttft_p50_s": _round(percentile(ttft, 50)),
        "ttft_p95_s": _round(percentile(ttft, 95)),
        "itl_p50_ms": _round(_ms(percentile(itl, 50))),
        "itl_p95_ms": _round(_ms(percentile(itl, 95))),
        "error_samples": sorted({t.error for t in timings if t.error})[:3],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
