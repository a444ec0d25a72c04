"""Redis without a single point of failure: a primary, a replica and three sentinels (a quorum
of two), the stack on the sentinels' URL, and the primary killed while requests stream.

A stored response waits for the replica to have it (REDIS_WAIT_MS: its answer waits that long
with the replica frozen). Requests in flight end cleanly (an answer, or an error the client
sees: never a hang); new requests succeed within 30 s of the kill; what was stored before it (a
stored response, a finished batch's output) is still there; the old primary, started again,
rejoins as a replica. The test prints what it measured."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import openai
import pytest
import redis

from devtools.localstack import free_port, redis_server_binary, stop_process
from tests.integration.conftest import TINY
from tests.integration.test_redis_urls import (
    PASSWORD,
    answers,
    primary_and_replica,
    redis_node,
    replicating,
    start,
    wait_until,
)

MASTER = "failover-master"
LOAD_THREADS = 4
SERVE_WITHIN = 30.0  # seconds from the kill to a request that succeeds again


def sentinel(binary: str, port: int, master_port: int, workdir) -> object:
    directory = workdir / f"sentinel-{port}"
    directory.mkdir()
    config = directory / "sentinel.conf"  # each rewrites its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
        f"sentinel auth-pass {MASTER} {PASSWORD}\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
    )
    return start([binary, str(config), "--sentinel"], workdir, f"sentinel-{port}")


class Load:
    """Threads that stream chat completions until told to stop, each request's outcome kept:
    ``(started, ended, outcome)``, the outcome ``ok`` or the error the client saw."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client
        self.results: list[tuple[float, float, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                chunks = list(
                    self.client.chat.completions.create(
                        model=TINY,
                        messages=[{"role": "user", "content": "Hello"}],
                        max_tokens=30,
                        temperature=0,
                        stream=True,
                    )
                )
                assert chunks[-1].choices[0].finish_reason == "length"
                outcome = "ok"
            except openai.APITimeoutError:
                outcome = "hang"
            except openai.APIStatusError as exc:
                outcome = f"{exc.status_code} {(exc.body or {}).get('code', '')}".strip()
            except openai.APIError as exc:  # an error frame in a stream that had begun
                outcome = f"stream {getattr(exc, 'code', None) or type(exc).__name__}"
            self.results.append((started, time.monotonic(), outcome))
            if outcome != "ok":
                time.sleep(0.2)


def test_the_primary_dies_under_load_and_the_stack_carries_on(stack, tmp_path):
    binary = redis_server_binary()
    sentinel_ports = [free_port() for _ in range(3)]
    master, replica, master_port, replica_port, replica_client = primary_and_replica(
        binary, tmp_path
    )
    sentinels: list = []
    started = len(stack.processes)
    try:
        sentinels = [sentinel(binary, p, master_port, tmp_path) for p in sentinel_ports]
        for process, port in zip(sentinels, sentinel_ports, strict=True):
            client = redis.Redis(port=port, decode_responses=True)
            wait_until(  # each knows the replica and the other sentinels
                lambda c=client: (
                    answers(lambda: c)
                    and c.execute_command("SENTINEL", "REPLICAS", MASTER)
                    and len(c.execute_command("SENTINEL", "SENTINELS", MASTER)) == 2
                ),
                process,
                "Sentinel",
                timeout=30,
            )
        url = ";".join(f"sentinel://:{PASSWORD}@127.0.0.1:{p}" for p in sentinel_ports) + "/0"
        stack.env["REDIS_SENTINEL_MASTER"] = MASTER
        front = stack.front(REDIS_URL=url, REDIS_WAIT_MS="1000")
        stack.worker([TINY], front, REDIS_URL=url)
        client = openai.OpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0, timeout=60)

        # Stored before the failover: a response, and a batch run to its end.
        stored = client.responses.create(model=TINY, input="Hello", max_output_tokens=5)
        line = {"method": "POST", "url": "/v1/chat/completions"}
        body = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        lines = [json.dumps({"custom_id": f"r{i}", **line, "body": body}) for i in range(2)]
        upload = client.files.create(
            file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 120
        while (batch := client.batches.retrieve(batch.id)).status != "completed":
            assert time.monotonic() < deadline and batch.status not in ("failed", "cancelled")
            time.sleep(0.5)
        output = client.files.content(batch.output_file_id).text

        # A stored response waits for the replica to have it: with the replica frozen, its
        # answer waits REDIS_WAIT_MS; with it running, no time to speak of.
        timed = []
        for frozen in (True, False):
            if frozen:
                os.killpg(replica.pid, signal.SIGSTOP)
            began = time.monotonic()
            client.responses.create(model=TINY, input="Hello", max_output_tokens=2)
            timed.append(time.monotonic() - began)
            if frozen:
                os.killpg(replica.pid, signal.SIGCONT)
        assert timed[0] >= 1.0 > timed[1], timed

        load = Load(client)
        for thread in load.threads:
            thread.start()
        time.sleep(3)  # requests streaming
        os.killpg(master.pid, signal.SIGKILL)
        master.wait()
        killed = time.monotonic()
        wait_until(
            lambda: replica_client.info("replication")["role"] == "master",
            sentinels[0],
            "the failover",
            timeout=60,
        )
        promoted = time.monotonic() - killed
        deadline = killed + 60
        while time.monotonic() < deadline:  # until each thread has succeeded again, a while
            served = [r for r in load.results if r[0] > killed and r[2] == "ok"]
            if len(served) >= 3 * LOAD_THREADS:
                break
            time.sleep(0.5)
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=90)
        assert not any(t.is_alive() for t in load.threads), "a request never ended"

        before = [r for r in load.results if r[1] < killed]
        around = [r for r in load.results if r[0] <= killed <= r[1]]
        after = [r for r in load.results if r[0] > killed]
        first = min((r[1] for r in after if r[2] == "ok"), default=None)
        failed: dict[str, int] = {}
        for _, _, outcome in load.results:
            if outcome != "ok":
                failed[outcome] = failed.get(outcome, 0) + 1
        print(
            f"\nstored response: {timed[0]:.2f} s with the replica frozen, {timed[1]:.2f} s "
            "with it running"
        )
        print(
            f"failover: replica promoted {promoted:.1f} s after the kill; first request "
            f"served again {first - killed:.1f} s after it; requests: {len(before)} before, "
            f"{len(around)} in flight at the kill "
            f"({sum(r[2] == 'ok' for r in around)} ended well), {len(after)} after "
            f"({sum(r[2] == 'ok' for r in after)} ok); failed: {failed or 'none'}"
            if first is not None
            else f"\nfailover: no request served again; results {load.results}"
        )
        assert first is not None and first - killed <= SERVE_WITHIN
        assert "hang" not in failed
        assert all(r[2] == "ok" for r in before)

        # The old primary, back, rejoins as a replica of the new one (the sentinels make it).
        master = redis_node(binary, master_port, tmp_path, "old-master")
        old = redis.Redis(port=master_port, password=PASSWORD, decode_responses=True)
        wait_until(
            lambda: replicating(old, replica_port),
            master,
            "the old primary as a replica",
            timeout=60,
        )

        # Nothing stored before the failover is lost.
        again = client.responses.retrieve(stored.id)
        assert (again.status, again.output_text) == (stored.status, stored.output_text)
        assert client.batches.retrieve(batch.id).status == "completed"
        assert client.files.content(batch.output_file_id).text == output
    finally:
        stack.env.pop("REDIS_SENTINEL_MASTER", None)
        for process in reversed(stack.processes[started:]):
            stop_process(process)
        for process in (*sentinels, replica, master):
            stop_process(process)


pytestmark = pytest.mark.timeout(600)
