"""The images built and run for real with podman: Redis, the front and a CPU worker per default
model as containers, started from the compose file's definitions, answering the openai SDK; a
worker stopped mid-stream drains (the stream ends whole, the container exits 0).

Opt-in (it builds images: about ten minutes on a 2-core machine the first time):

    CONTAINER_TESTS=1 python3 manage.py test tests/containers -s

The compose file itself needs service names on a bridge network, which this sandbox's podman
cannot give (host networking only), so the services are started one by one from the same
definitions (images, environment, commands, volumes), on the host's network.
"""

from __future__ import annotations

import os
import time

import openai
import pytest
import yaml

from config.registry import DEFAULT_MODELS
from devtools.localstack import free_port, wait_for_models
from tests.containers import podman

pytestmark = pytest.mark.skipif(
    os.environ.get("CONTAINER_TESTS") != "1", reason="builds images: set CONTAINER_TESTS=1"
)

FRONT, WORKER = "llm-queue-front:test", "llm-queue-worker:cpu"
CACHE = "llm-queue-test-cache"
CHAT = "smollm2-135m-instruct"
WHEELS = os.environ.get("TORCH_WHEELS", "/opt/wheels")  # where this machine keeps torch's CPU wheel
TORCH_INDEX = os.environ.get("TORCH_INDEX", "https://pypi.org/simple")
EMBED = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def images():
    podman.ensure_podman()
    report = podman.ensure_base_images()
    seconds = {
        FRONT: podman.build("docker/front.Dockerfile", FRONT),
        # torch's CPU wheel from the machine's own wheel directory (mounted into the build), not
        # from download.pytorch.org, which it cannot reach.
        WORKER: podman.build(
            "docker/worker.Dockerfile",
            WORKER,
            "DEVICE=cpu",
            f"TORCH_INDEX={TORCH_INDEX}",
            f"PIP_FIND_LINKS={WHEELS}",
        ),
    }
    for image, took in seconds.items():
        report.append(f"built {image} in {took:.0f} s: {podman.size_mb(image):.0f} MB")
    print("\n" + "\n".join(report))
    return seconds


@pytest.fixture(scope="module")
def stack(images):
    compose = yaml.safe_load((podman.ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    redis_port, port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    names = []
    redis = services["redis"]
    podman.run("llmq-redis", redis["image"], {}, [*redis["command"], "--port", str(redis_port)])
    names.append("llmq-redis")
    front = services["front"]
    env = {**front["environment"], "REDIS_URL": redis_url, "PORT": str(port)}
    podman.run("llmq-front", FRONT, env)
    names.append("llmq-front")
    workers = {}
    for name, service in services.items():
        if name.startswith("worker-") and "profiles" not in service:
            env = {**service["environment"], "REDIS_URL": redis_url}
            volume = service["volumes"][0].replace("model-cache", CACHE)
            podman.run(f"llmq-{name}", service.get("image", WORKER), env, volumes=[volume])
            names.append(f"llmq-{name}")
            workers[service["environment"]["MODELS"]] = f"llmq-{name}"
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        wait_for_models(base, sorted(workers), 900)
        print(
            f"\nthe stack answered for {sorted(workers)} after {time.monotonic() - started:.0f} s"
        )
        yield base, workers
    finally:
        for name in names:
            print(f"--- {name} (last lines)\n" + "\n".join(podman.logs(name).splitlines()[-5:]))
        podman.remove(*names)


def test_the_compose_file_starts_a_worker_per_default_model(stack):
    _, workers = stack
    assert set(workers) == {spec.name for spec in DEFAULT_MODELS}


def test_chat_stream_and_embeddings_through_the_containers(stack):
    base, _ = stack
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="EMPTY", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=12)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(model=CHAT, messages=messages, max_tokens=12, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    vectors = client.embeddings.create(model=EMBED, input=["a queue", "a worker"])
    assert [len(v.embedding) for v in vectors.data] == [384, 384]


def test_a_stopped_worker_drains_its_stream_first(stack):
    base, workers = stack
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="EMPTY", max_retries=0, timeout=300)
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=150,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = [next(stream)]
    code = None
    for chunk in stream:
        chunks.append(chunk)
        if code is None and len(chunks) == 5:  # mid-stream: SIGTERM the worker
            code = podman.stop(workers[CHAT])
    if code is None:
        code = podman.stop(workers[CHAT])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and chunks[-1].usage.completion_tokens == 150
    assert code == 0
    assert "draining" in podman.logs(workers[CHAT])
