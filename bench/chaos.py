"""Chaos: mixed clients while a worker is SIGKILLed and Redis is killed and restarted.

    python -m bench.chaos [--clients 16] [--seconds 60] [--max-tokens 24] [--model NAME]

Starts Redis (append-only file on), two workers of the model and one front, as ``manage.py up``
starts them. N clients send streaming and non-streaming chat and text completions back to back
for T seconds. At 30% of T the worker holding the most jobs is SIGKILLed and a replacement
started; at 60%, Redis is SIGKILLed and restarted from its append-only file 2 s later. Then it
prints how every request ended:

- ok: the whole answer (a stream ends with a finish_reason and ``[DONE]``);
- a clean OpenAI error, by code: an HTTP error with OpenAI's body, or a stream's error frame
  followed by ``[DONE]``;
- broken: a stream cut without ``[DONE]``, a reset connection, an error body not in OpenAI's shape;
- hung: nothing for --hang-after seconds;

and how the non-streamed requests in flight when the worker died were answered.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

from bench.clients import sse_chunks
from bench.prompts import messages
from devtools.localstack import (
    EmbeddedRedis,
    free_port,
    start_front,
    start_worker,
    stop_process,
    wait_for_models,
)

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".run" / "chaos"
READY = re.compile(r"worker (\S+) ready: serving")
KINDS = ("chat-stream", "chat", "completion-stream", "completion")


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float = 0.0
    result: str = "ok"  # ok | error | broken | hung
    detail: str = ""  # the error code, or what broke


def request(base: str, kind: str, i: int, max_tokens: int, model: str, hang_after: float):
    """One request of ``kind``; returns its :class:`Outcome`."""
    outcome = Outcome(kind, time.monotonic())
    chat = kind.startswith("chat")
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0.7, "ignore_eos": True}
    if chat:
        body["messages"] = messages(i)
    else:
        body["prompt"] = messages(i)[0]["content"]
    body["stream"] = kind.endswith("stream")
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=hang_after)
    path = "/v1/chat/completions" if chat else "/v1/completions"
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            _error_body(outcome, response.read())
        elif body["stream"]:
            _read_stream(outcome, response)
        else:
            reply = json.loads(response.read())
            if not reply.get("choices") or reply["choices"][0].get("finish_reason") is None:
                outcome.result, outcome.detail = "broken", "a 200 without a finished choice"
    except TimeoutError:
        outcome.result, outcome.detail = "hung", f"nothing for {hang_after:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        outcome.result, outcome.detail = "broken", type(exc).__name__
    finally:
        conn.close()
        outcome.ended = time.monotonic()
    return outcome


def _error_body(outcome: Outcome, raw: bytes) -> None:
    try:
        error = json.loads(raw)["error"]
        assert {"message", "type", "param", "code"} <= set(error)
        outcome.result, outcome.detail = "error", str(error["code"])
    except (ValueError, KeyError, TypeError, AssertionError):
        outcome.result, outcome.detail = "broken", f"not an OpenAI error: {raw[:80]!r}"


def _read_stream(outcome: Outcome, response) -> None:
    finished, error, done = False, None, False
    for chunk in sse_chunks(response):
        if chunk is None:
            done = True
        elif "error" in chunk:
            error = chunk["error"].get("code") or "unknown"
        elif any(c.get("finish_reason") for c in chunk.get("choices", [])):
            finished = True
    if not done:
        outcome.result, outcome.detail = "broken", "stream cut without [DONE]"
    elif error is not None:
        outcome.result, outcome.detail = "error", str(error)
    elif not finished:
        outcome.result, outcome.detail = "broken", "[DONE] without a finish_reason"


class Stack:
    def __init__(self, model: str, workers: int) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        for old in LOGS.glob("*"):
            if old.is_file():
                old.unlink()
        self.model = model
        self.redis = EmbeddedRedis(LOGS / "redis", persist=True)
        # Two workers share the machine's cores: each gets its half, or their torch threads
        # spin against each other and every step slows down many times over.
        threads = str(max(1, (os.cpu_count() or 2) // workers))
        self.env = {**os.environ, "REDIS_URL": self.redis.start(), "OMP_NUM_THREADS": threads}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.front = start_front("127.0.0.1", self.port, self.env, LOGS / "front.log", ["--quiet"])
        self.workers: dict[str, object] = {}
        for _ in range(workers):
            self.add_worker()

    def add_worker(self) -> str:
        log = LOGS / f"worker-{len(self.workers)}.log"
        process = start_worker([self.model], self.env, log=log)
        deadline = time.monotonic() + 600
        while not (found := READY.search(log.read_text() if log.exists() else "")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start; see {log}")
            time.sleep(0.2)
        self.workers[found.group(1)] = process
        wait_for_models(self.base, [self.model], 600, [process])
        return found.group(1)

    def stop(self) -> None:
        for process in self.workers.values():
            stop_process(process)
        stop_process(self.front)
        self.redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--hang-after", type=float, default=150.0)
    args = parser.parse_args()

    print(f"starting Redis (append-only), 2 {args.model} workers and a front ...", flush=True)
    stack = Stack(args.model, 2)
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.seconds
    events: list[str] = []

    def run_client(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            outcome = request(
                stack.base, rng.choice(KINDS), i, args.max_tokens, args.model, args.hang_after
            )
            with lock:
                outcomes.append(outcome)
            if outcome.result != "ok":
                time.sleep(0.2)  # as a client backs off; no hot loop while Redis is down

    threads = [threading.Thread(target=run_client, args=(i,)) for i in range(args.clients)]
    in_flight_at_kill: list[Outcome] = []
    try:
        for thread in threads:
            thread.start()
        time.sleep(args.seconds * 0.3)
        victim, held = _busiest_worker(client, stack)
        os.killpg(stack.workers[victim].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        events.append(
            f"t={killed_at - started:5.1f} s  SIGKILL worker {victim} ({held} jobs on it); "
            "a replacement starts"
        )
        replacement = threading.Thread(target=stack.add_worker)
        replacement.start()
        time.sleep(max(0.0, started + args.seconds * 0.6 - time.monotonic()))
        os.killpg(stack.redis.process.pid, signal.SIGKILL)
        down_at = time.monotonic()
        time.sleep(2)
        stack.redis.start()
        up_at = time.monotonic()
        events.append(
            f"t={down_at - started:5.1f} s  SIGKILL Redis; restarted from its append-only file "
            f"{time.monotonic() - down_at:.1f} s later"
        )
        for thread in threads:
            thread.join()
        replacement.join()
    finally:
        stack.stop()
    with lock:
        in_flight_at_kill = [
            o for o in outcomes if not o.kind.endswith("stream") and o.started < killed_at < o.ended
        ]
    phases = [
        ("before the worker died", started, killed_at),
        ("worker dead, Redis up", killed_at, down_at),
        ("Redis down", down_at, up_at),
        ("Redis back", up_at, float("inf")),
    ]
    report(args, outcomes, events, in_flight_at_kill, phases)


def _busiest_worker(client: redis.Redis, stack: Stack) -> tuple[str, int]:
    """The worker holding the most unfinished jobs right now (read from the claims)."""
    counts = collections.Counter(
        client.get(key)
        for key in client.scan_iter("llm:claim:*")
        if not client.exists(key.replace("llm:claim:", "llm:finished:"))
    )
    return max(stack.workers, key=lambda w: counts.get(w, 0)), max(counts.values(), default=0)


def report(
    args,
    outcomes: list[Outcome],
    events: list[str],
    in_flight: list[Outcome],
    phases: list[tuple[str, float, float]],
) -> None:
    by_result = collections.Counter(o.result for o in outcomes)
    codes = collections.Counter(o.detail for o in outcomes if o.result == "error")
    broken = collections.Counter(o.detail for o in outcomes if o.result in ("broken", "hung"))
    print(
        f"\nchaos: {args.clients} clients for {args.seconds:g} s, mixed streaming and "
        f"non-streaming chat and completions ({args.max_tokens} tokens), model {args.model}"
    )
    for line in events:
        print(f"  {line}")
    print(f"requests: {len(outcomes)}")
    kinds = collections.Counter(o.kind for o in outcomes)
    print("  by kind:          " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    print(f"  ok:               {by_result['ok']}")
    print(f"  clean error:      {by_result['error']} {dict(codes.most_common())}")
    print(f"  broken:           {by_result['broken']}")
    print(f"  hung:             {by_result['hung']}")
    if broken:
        print(f"  what broke:       {dict(broken.most_common())}")
    print("by when they ended:")
    for name, start, end in phases:
        ended = [o for o in outcomes if start <= o.ended < end]
        results = collections.Counter(o.result if o.result != "error" else o.detail for o in ended)
        print(f"  {name + ':':24}{len(ended):4}  {dict(results.most_common())}")
    answered = sum(o.result == "ok" for o in in_flight)
    print(
        f"non-streaming requests in flight when the worker died: {len(in_flight)}, "
        f"answered: {answered}"
        + (
            f" (others: {[o.detail for o in in_flight if o.result != 'ok']})"
            if answered < len(in_flight)
            else ""
        )
    )


if __name__ == "__main__":
    main()
