"""LoRA adapters loaded at run time, for real: ``/v1/load_lora_adapter`` with an admin key on a
front with ADMIN_API_KEYS, a worker of the base (the faulty tiny model, slowed down so that a
stream is still running when the adapter is unloaded), a worker that starts later, the openai
SDK for the requests."""

import threading

import httpx
import pytest
from openai import NotFoundError, OpenAI

from config.keys import heartbeat_key
from config.protocol import decode
from devtools.localstack import stop_process
from tests.integration.conftest import RUNTIME_BASE

ADMIN = "sk-admin-test"
LORA = "tiny-rt-lora"
MESSAGES = [{"role": "user", "content": "Once upon a time"}]


@pytest.fixture(scope="module")
def admin_front(stack):
    return stack.front(ADMIN_API_KEYS=ADMIN)


@pytest.fixture(scope="module")
def base_worker(stack, admin_front):
    return stack.worker([RUNTIME_BASE], admin_front, FAULTY_STEP_DELAY="0.02")


@pytest.fixture(scope="module")
def client(admin_front):
    return OpenAI(base_url=f"{admin_front}/v1", api_key="EMPTY", max_retries=0, timeout=120)


def post(front, path, body, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{front}/v1/{path}", json=body, headers=headers, timeout=120)


def reply(client, model, **extra):
    answer = client.chat.completions.create(
        model=model, messages=MESSAGES, temperature=0, max_tokens=12, **extra
    )
    return answer.choices[0].message.content


def listed(client):
    return {m.id: m for m in client.models.list().data}


def test_changing_adapters_needs_an_admin_key(front, admin_front, tiny_adapter_dirs):
    body = {"lora_name": LORA, "lora_path": str(tiny_adapter_dirs[0])}
    for where, key in ((admin_front, None), (admin_front, "sk-not-admin"), (front, ADMIN)):
        for path in ("load_lora_adapter", "unload_lora_adapter"):
            answer = post(where, path, body, key)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "permission_denied"
    assert (
        "ADMIN_API_KEYS" in post(front, "load_lora_adapter", body, ADMIN).json()["error"]["message"]
    )


def test_an_adapter_is_loaded_used_listed_and_unloaded(
    stack, admin_front, base_worker, client, redis_client, tiny_adapter_dirs
):
    base = reply(client, RUNTIME_BASE)
    body = {
        "lora_name": LORA,
        "lora_path": str(tiny_adapter_dirs[0]),
        "base_model_name": RUNTIME_BASE,
    }
    answer = post(admin_front, "load_lora_adapter", body, ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.text == f"Success: LoRA adapter '{LORA}' added successfully."

    card = listed(client)[LORA]
    assert card.parent == RUNTIME_BASE
    adapted = reply(client, LORA)
    assert adapted != base and reply(client, LORA) == adapted
    assert reply(client, RUNTIME_BASE) == base  # the base is as it was
    again = post(admin_front, "load_lora_adapter", body, ADMIN)
    assert again.status_code == 400 and "already been loaded" in again.text

    # A worker that starts later loads it before it says it is ready.
    late = stack.worker([RUNTIME_BASE], admin_front, FAULTY_STEP_DELAY="0.02")
    status = decode(redis_client.get(heartbeat_key(late.worker_id)))
    assert LORA in status["models"]
    stop_process(late)

    # Unloading waits for the adapter's running sequences: a long stream runs to its end.
    first, done = threading.Event(), {}

    def stream():
        chunks = client.chat.completions.create(
            model=LORA,
            messages=MESSAGES,
            temperature=0,
            max_tokens=120,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        for chunk in chunks:
            first.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                done["reason"] = chunk.choices[0].finish_reason
            if chunk.usage:
                done["tokens"] = chunk.usage.completion_tokens

    streaming = threading.Thread(target=stream)
    streaming.start()
    assert first.wait(60)
    answer = post(admin_front, "unload_lora_adapter", {"lora_name": LORA}, ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.text == f"Success: LoRA adapter '{LORA}' removed successfully."
    streaming.join(timeout=5)
    assert not streaming.is_alive() and done == {"reason": "length", "tokens": 120}

    assert LORA not in listed(client)
    with pytest.raises(NotFoundError):
        reply(client, LORA)
    gone = post(admin_front, "unload_lora_adapter", {"lora_name": LORA}, ADMIN)
    assert gone.status_code == 404
    assert reply(client, RUNTIME_BASE) == base


def test_an_adapter_that_cannot_be_loaded_is_refused(admin_front, base_worker, client, tmp_path):
    def load(**body):
        return post(admin_front, "load_lora_adapter", body, ADMIN)

    empty = load(lora_name="tiny-rt-bad", lora_path=str(tmp_path), base_model_name=RUNTIME_BASE)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "lora_path"
    assert "tiny-rt-bad" not in listed(client)
    taken = load(lora_name=RUNTIME_BASE, lora_path=str(tmp_path), base_model_name=RUNTIME_BASE)
    assert taken.status_code == 400  # a registry model's name
    unknown = load(lora_name="x-lora", lora_path=str(tmp_path), base_model_name="no-such-model")
    assert unknown.status_code == 404
    static = post(admin_front, "unload_lora_adapter", {"lora_name": RUNTIME_BASE}, ADMIN)
    assert static.status_code == 400  # only adapters loaded at run time can be unloaded
