"""Embeddings through the API against sentence-transformers alone, side by side in one run.

    python -m bench.embeddings [--clients 8] [--sentences 16] [--seconds 30]

``--clients`` threads each send requests of ``--sentences`` short sentences back to back for
``--seconds``: first to the API (Redis, one MiniLM worker and a front, started here), asking for
floats (as cURL does) and then for base64 (as the openai SDK does by default, decoding the
vectors itself), then, the stack stopped, straight to the same model in sentence-transformers
(``model.encode``, same threads, same requests). Prints sentences/s for each and the API's share
(target: >= 90%).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import threading
import time

import numpy as np

from bench.stack import start_stack, stop_stack

WORDS = "queue worker token stream model redis front batch engine client request reply".split()


def sentences(client: int, request: int, count: int) -> list[str]:
    return [
        f"{WORDS[(client + i) % len(WORDS)]} number {request * count + i} is a short sentence"
        for i in range(count)
    ]


def drive(send, clients: int, count: int, seconds: float) -> float:
    """``clients`` threads calling ``send(texts)`` back to back; returns sentences per second."""
    done = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        request = 0
        while time.perf_counter() < deadline:
            send(sentences(number, request, count))
            done[number] += count
            request += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def through_api(port: int, model: str, encoding: str = "float"):
    """Requests as cURL makes them (``float``: JSON numbers) or as the openai SDK does
    (``base64``, its default: the vectors' bytes, which it decodes with numpy)."""

    def send(texts: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        body = json.dumps({"model": model, "input": texts, "encoding_format": encoding})
        conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read())
        conn.close()
        if response.status != 200 or len(data["data"]) != len(texts):
            raise RuntimeError(f"HTTP {response.status}: {str(data)[:200]}")
        if encoding == "base64":
            [np.frombuffer(base64.b64decode(item["embedding"]), "<f4") for item in data["data"]]

    return send


def library_alone(model_name: str):
    from sentence_transformers import SentenceTransformer

    from config.registry import load_registry, resolve_source
    from config.settings import Settings

    spec = load_registry(Settings.from_env().models_file)[model_name]
    model = SentenceTransformer(resolve_source(spec), device="cpu")

    def send(texts: list[str]) -> None:
        model.encode(texts, batch_size=len(texts))

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    from devtools.localstack import free_port

    port = free_port()
    print(f"starting Redis, a {args.model} worker and a front ...", flush=True)
    stack = start_stack(args.model, port, name="embeddings")
    api = {}
    try:
        drive(through_api(port, args.model), args.clients, args.sentences, 3)  # warm-up
        for encoding in ("float", "base64"):
            send = through_api(port, args.model, encoding)
            api[encoding] = drive(send, args.clients, args.sentences, args.seconds)
    finally:
        stop_stack(*stack)
    print("loading the model in sentence-transformers alone ...", flush=True)
    send = library_alone(args.model)
    drive(send, args.clients, args.sentences, 3)  # warm-up
    alone = drive(send, args.clients, args.sentences, args.seconds)
    print(
        f"\n{args.clients} clients x {args.sentences} sentences per request, "
        f"{args.seconds:.0f} s each:"
    )
    print(f"  sentence-transformers alone:            {alone:8.1f} sentences/s")
    labels = {"float": "floats, as cURL asks", "base64": "base64, as the SDK asks"}
    for encoding, label in labels.items():
        share = 100 * api[encoding] / alone
        print(f"  through the API, {label:<23}{api[encoding]:8.1f} sentences/s, {share:5.1f} %")
    print("  target: the API at >= 90 % of the library alone")


if __name__ == "__main__":
    main()
