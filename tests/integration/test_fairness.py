"""Fair shares between API keys, for real: one key floods a model with more requests than its
worker holds at once, another sends a few dozen a little later, and the later key's requests do
not wait behind the flood (config/lanes.py); every request of the flood still completes."""

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from tests.integration.conftest import FAIR
from tests.integration.http import get

FLOOD, LATER = 96, 24


@pytest.fixture(scope="module")
def fair_front(stack, front):
    # The faulty model, 20 ms a step: 4 rows at a time, each request 8 steps.
    stack.worker([FAIR], front, FAULTY_STEP_DELAY="0.02")
    return stack.front(API_KEYS="key-a,key-b")


def send(base: str, key: str) -> float:
    """One completion with ``key``; its latency in seconds."""
    client = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=300)
    started = time.monotonic()
    reply = client.completions.create(
        model=FAIR, prompt="Hello", max_tokens=8, extra_body={"ignore_eos": True}
    )
    assert reply.usage.completion_tokens == 8
    return time.monotonic() - started


def test_a_key_sending_later_does_not_wait_behind_another_keys_flood(fair_front):
    latencies: dict[str, list[float]] = {"key-a": [], "key-b": []}
    lock = threading.Lock()

    def one(key: str) -> None:
        latency = send(fair_front, key)
        with lock:
            latencies[key].append(latency)

    with ThreadPoolExecutor(FLOOD + LATER) as pool:
        flood = [pool.submit(one, "key-a") for _ in range(FLOOD)]
        time.sleep(2)
        later = [pool.submit(one, "key-b") for _ in range(LATER)]
        for future in flood + later:
            future.result()  # every request of both keys succeeded

    a, b = statistics.median(latencies["key-a"]), statistics.median(latencies["key-b"])
    print(f"\nmedian latency: key-a (flood of {FLOOD}) {a:.2f} s, key-b ({LATER}) {b:.2f} s")
    assert len(latencies["key-a"]) == FLOOD and len(latencies["key-b"]) == LATER
    # First come, first served, B would wait behind A's whole flood: its median above A's
    # (1.7 times it in bench/fairness.py). With fair shares it is well under; a machine busy
    # with other work narrows the gap, hence not a tighter bound.
    assert b < a * 0.65, (a, b)

    # Both keys' tokens served, by owner hash: the keys themselves never show.
    metrics = get(fair_front, "/metrics")[2]
    served = [
        line
        for line in metrics.splitlines()
        if line.startswith("llm_key_served_tokens_total") and f'model="{FAIR}"' in line
    ]
    assert len(served) == 2, served
    assert sum(float(line.rsplit(" ", 1)[1]) for line in served) >= (FLOOD + LATER) * 8
    assert "key-a" not in metrics and "key-b" not in metrics
