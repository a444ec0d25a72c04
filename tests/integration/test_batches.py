"""Files and the Batch API through the openai SDK (sync and async): batches that complete, lines
that fail alone, files that cannot be batches, cancel, expiry, owners; and the faults a batch must
survive: a worker killed mid-batch, the front that created it gone, Redis restarted from its
append-only file. Every custom_id appears exactly once in the output."""

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from devtools.localstack import EmbeddedRedis
from tests.integration.conftest import FAULTY, FAULTY_BG, TINY
from tests.integration.test_abandoned import running, wait_for

pytestmark = pytest.mark.usefixtures("tiny_worker")

DONE = ("completed", "failed", "expired", "cancelled")


def chat_line(i, model=TINY, **body):
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"Hello {i}"}],
            "max_tokens": 4,
            "temperature": 0,
            **body,
        },
    }


def jsonl(lines) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(client, lines, purpose="batch"):
    return client.files.create(file=("batch.jsonl", jsonl(lines)), purpose=purpose)


def run_batch(client, lines, endpoint="/v1/chat/completions", timeout=120):
    file = upload(client, lines)
    batch = client.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h")
    return wait_for(
        lambda: (b := client.batches.retrieve(batch.id)).status in DONE and b, timeout=timeout
    )


def entries(client, file_id):
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_files_upload_list_read_delete(openai_client):
    file = upload(openai_client, [chat_line(0)])
    assert file.id.startswith("file-") and file.purpose == "batch" and file.bytes > 0
    assert openai_client.files.retrieve(file.id).filename == "batch.jsonl"
    assert file.id in [f.id for f in openai_client.files.list(purpose="batch")]
    assert file.id not in [f.id for f in openai_client.files.list(purpose="batch_output")]
    assert json.loads(openai_client.files.content(file.id).text)["custom_id"] == "req-0"
    openai_client.files.delete(file.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve(file.id)


def test_a_chat_batch_completes_with_each_custom_id_once(openai_client):
    lines = [chat_line(i) for i in range(8)]
    lines.append(chat_line(8, temperature=9))  # refused as the endpoint would refuse it
    batch = run_batch(openai_client, lines)
    assert batch.status == "completed"
    assert (batch.request_counts.total, batch.request_counts.completed) == (9, 8)
    assert batch.request_counts.failed == 1
    output = entries(openai_client, batch.output_file_id)
    assert sorted(e["custom_id"] for e in output) == [f"req-{i}" for i in range(8)]
    for entry in output:
        response = entry["response"]
        assert response["status_code"] == 200 and entry["error"] is None
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["usage"]["completion_tokens"] == 4
    (error,) = entries(openai_client, batch.error_file_id)
    assert error["custom_id"] == "req-8" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "temperature"
    assert openai_client.files.retrieve(batch.output_file_id).purpose == "batch_output"


@pytest.mark.usefixtures("embed_worker")
def test_completions_embeddings_and_responses_batches(openai_client):
    completions = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": TINY, "prompt": "Once", "max_tokens": 3},
        }
        for i in range(3)
    ]
    batch = run_batch(openai_client, completions, "/v1/completions")
    assert {
        e["response"]["body"]["object"] for e in entries(openai_client, batch.output_file_id)
    } == {"text_completion"}
    embeds = [
        {
            "custom_id": f"e{i}",
            "url": "/v1/embeddings",
            "body": {"model": "all-minilm-l6-v2", "input": ["a", "b"]},
        }
        for i in range(3)
    ]
    batch = run_batch(openai_client, embeds, "/v1/embeddings")
    out = entries(openai_client, batch.output_file_id)
    assert len(out) == 3 and len(out[0]["response"]["body"]["data"]) == 2
    assert len(out[0]["response"]["body"]["data"][0]["embedding"]) == 384
    responses = [
        {
            "custom_id": f"r{i}",
            "url": "/v1/responses",
            "body": {"model": TINY, "input": "Hi", "max_output_tokens": 3, "temperature": 0},
        }
        for i in range(2)
    ]
    batch = run_batch(openai_client, responses, "/v1/responses")
    out = entries(openai_client, batch.output_file_id)
    assert [e["response"]["body"]["object"] for e in out] == ["response", "response"]
    assert out[0]["response"]["body"]["usage"]["output_tokens"] == 3


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        (
            b'{"custom_id": "a", "url": "/v1/chat/completions", "body": {}}\nnot json\n',
            "invalid_json_line",
            2,
        ),
        (jsonl([chat_line(0), chat_line(0)]), "duplicate_custom_id", 2),
        (jsonl([{**chat_line(0), "url": "/v1/embeddings"}]), "mismatched_url", 1),
        (
            jsonl([{k: v for k, v in chat_line(0).items() if k != "custom_id"}]),
            "missing_custom_id",
            1,
        ),
    ],
)
def test_a_file_that_cannot_be_a_batch_fails_it(openai_client, content, code, line):
    file = openai_client.files.create(file=("bad.jsonl", content), purpose="batch")
    batch = openai_client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "failed"
    assert (batch.errors.data[0].code, batch.errors.data[0].line) == (code, line)


def test_batches_with_the_async_client(openai_client):
    async def run():
        client = openai.AsyncOpenAI(base_url=str(openai_client.base_url), api_key="EMPTY")
        file = await client.files.create(file=("b.jsonl", jsonl([chat_line(0)])), purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        for _ in range(600):
            batch = await client.batches.retrieve(batch.id)
            if batch.status in DONE:
                break
            await asyncio.sleep(0.1)
        listed = [b.id async for b in client.batches.list(limit=100)]
        await client.close()
        return batch, listed

    batch, listed = asyncio.run(run())
    assert batch.status == "completed" and batch.id in listed


def test_a_cancelled_batch_keeps_what_ran(stack, front, openai_client):
    stack.worker([FAULTY_BG], front, FAULTY_STEP_DELAY="0.05")
    lines = [chat_line(i, model=FAULTY_BG, max_tokens=40) for i in range(30)]
    file = upload(openai_client, lines)
    batch = openai_client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(lambda: openai_client.batches.retrieve(batch.id).request_counts.completed >= 1)
    cancelling = openai_client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_for(
        lambda: (b := openai_client.batches.retrieve(batch.id)).status == "cancelled" and b
    )
    ran = entries(openai_client, done.output_file_id)
    never = entries(openai_client, done.error_file_id)
    assert ran and never
    assert {e["error"]["code"] for e in never} == {"batch_cancelled"}
    ids = [e["custom_id"] for e in ran + never]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines)  # each exactly once


def test_an_expired_batch_keeps_what_ran(openai_client, redis_client):
    lines = [chat_line(i, max_tokens=200) for i in range(40)]
    file = upload(openai_client, lines)
    batch = openai_client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(lambda: openai_client.batches.retrieve(batch.id).request_counts.completed >= 1)
    record = json.loads(redis_client.get(f"llm:batch:{batch.id}"))
    record["expires_at"] = 0  # its 24 hours are over
    redis_client.set(f"llm:batch:{batch.id}", json.dumps(record), keepttl=True)
    done = wait_for(
        lambda: (b := openai_client.batches.retrieve(batch.id)).status == "expired" and b
    )
    ids = [e["custom_id"] for e in entries(openai_client, done.output_file_id)]
    expired = entries(openai_client, done.error_file_id)
    assert ids and {e["error"]["code"] for e in expired} == {"batch_expired"}
    everyone = sorted(line["custom_id"] for line in lines)
    assert sorted(ids + [e["custom_id"] for e in expired]) == everyone


@pytest.fixture(scope="module")
def keyed_front(stack):
    return stack.front(API_KEYS="key-one,key-two")


def test_files_and_batches_belong_to_their_key(keyed_front):
    one = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-one", max_retries=0)
    two = openai.OpenAI(base_url=f"{keyed_front}/v1", api_key="key-two", max_retries=0)
    file = upload(one, [chat_line(0)])
    batch = one.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for attempt in (
        lambda: two.files.retrieve(file.id),
        lambda: two.files.content(file.id),
        lambda: two.files.delete(file.id),
        lambda: two.batches.retrieve(batch.id),
        lambda: two.batches.cancel(batch.id),
        lambda: two.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert file.id not in [f.id for f in two.files.list()]
    assert batch.id not in [b.id for b in two.batches.list()]
    assert one.batches.retrieve(batch.id).id == batch.id


# -- faults ------------------------------------------------------------------------------------


def test_a_batch_survives_a_killed_worker_and_its_front(stack, front, openai_client):
    creator = stack.front()
    client = openai.OpenAI(base_url=f"{creator}/v1", api_key="EMPTY", max_retries=0)
    doomed = stack.worker([FAULTY_BG], front, FAULTY_STEP_DELAY="0.1")
    lines = [chat_line(i, model=FAULTY_BG, max_tokens=20) for i in range(12)]
    file = upload(client, lines)
    batch = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    os.killpg(stack.processes[stack.processes.index(doomed) - 1].pid, signal.SIGKILL)
    wait_for(lambda: openai_client.batches.retrieve(batch.id).request_counts.completed >= 1)
    wait_for(lambda: running(front, FAULTY_BG) >= 1)  # its engine holds lines now
    os.killpg(doomed.pid, signal.SIGKILL)  # mid-batch, holding lines
    stack.worker([FAULTY_BG], front)
    done = wait_for(
        lambda: (b := openai_client.batches.retrieve(batch.id)).status in DONE and b, 180
    )
    assert done.status == "completed" and done.request_counts.completed == 12
    ids = [e["custom_id"] for e in entries(openai_client, done.output_file_id)]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines)


def test_a_batch_survives_a_redis_restart(stack, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", persist=True)
    url = server.start()
    try:
        front = stack.front(REDIS_URL=url)
        stack.worker([TINY], front, REDIS_URL=url)
        client = openai.OpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0)
        lines = [chat_line(i, max_tokens=100) for i in range(20)]
        file = upload(client, lines)
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 2)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        server.start()  # the same port and directory: it reads its append-only file
        done = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status in DONE and b, 180)
        assert done.status == "completed" and done.request_counts.completed == 20
        ids = [e["custom_id"] for e in entries(client, done.output_file_id)]
        assert sorted(ids) == sorted(line["custom_id"] for line in lines)
    finally:
        server.stop()


def test_the_flex_tier_is_answered_at_bulk_priority(front, openai_client, faulty_worker):
    """Flex requests fill every slot of the slowed faulty model (4 rows, 20 ms a step, 150
    tokens: 3 s or more each); an interactive request sent after them overtakes them all, as
    bulk rows give way to it. At equal priority it would wait for a slot, behind all four."""
    finished: dict[str, float] = {}

    def ask(name: str, tier: str, tokens: int) -> None:
        reply = openai_client.chat.completions.create(
            model=FAULTY,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=tokens,
            temperature=0,
            extra_body={"ignore_eos": True},
            service_tier=tier,
        )
        assert reply.usage.completion_tokens == tokens
        finished[name] = time.monotonic()

    with ThreadPoolExecutor(5) as pool:
        flex = [pool.submit(ask, f"flex{i}", "flex", 150) for i in range(4)]
        wait_for(lambda: running(front, FAULTY) == 4, 20)
        started = time.monotonic()
        interactive = pool.submit(ask, "interactive", "auto", 5)
        for future in [*flex, interactive]:
            future.result()
    first_flex = min(finished[f"flex{i}"] for i in range(4))
    print(
        f"\ninteractive answered in {finished['interactive'] - started:.2f} s; the first flex "
        f"{first_flex - started:.2f} s after it was sent"
    )
    assert finished["interactive"] < first_flex
