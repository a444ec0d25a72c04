"""Redis stopped and started again, under a front and a worker of their own: 503s while it is
down (never a 500 or a hang), and both work again afterwards without a restart, also when the
worker was running jobs as Redis went away."""

import threading
import time

from devtools.localstack import EmbeddedRedis, wait_for_models
from tests.integration.conftest import TINY
from tests.integration.http import get, post

CHAT = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
LONG = {**CHAT, "max_tokens": 200, "ignore_eos": True}


def test_requests_get_503_while_redis_is_down_and_work_after(stack, tmp_path, tiny_model_dir):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        front = stack.front(REDIS_URL=url)
        stack.worker([TINY], front, REDIS_URL=url)
        assert post(front, "/v1/chat/completions", CHAT)[0] == 200
        assert get(front, "/ready")[2] == {"status": "ready", "models": [TINY], "stalled": []}

        server.stop()
        assert get(front, "/ready")[0] == 503 and get(front, "/health")[0] == 200
        for _ in range(3):
            started = time.monotonic()
            for status, _, body in (
                get(front, "/v1/models"),
                post(front, "/v1/chat/completions", CHAT),
                post(front, "/v1/chat/completions", {**CHAT, "stream": True}),
            ):
                assert status == 503, body
                assert body["error"]["code"] == "queue_unavailable"
            elapsed = time.monotonic() - started
            print(f"\n3 requests answered 503 in {elapsed:.2f} s")
            # At once, not after a timeout: the shortest the front could wait is the 5 s of a
            # subscription Redis never confirms, the longest the request's WORKER_API_TIMEOUT.
            assert elapsed < 5, elapsed

        server = EmbeddedRedis(tmp_path / "redis", port=server.port)
        server.start()
        wait_for_models(front, [TINY], 60)  # the worker announced itself again
        for stream in (False, True):
            status, _, body = post(front, "/v1/chat/completions", {**CHAT, "stream": stream})
            assert status == 200, body
    finally:
        server.stop()


def test_a_worker_running_jobs_when_redis_goes_away_carries_on_after(stack, tmp_path):
    """Three outages while clients send jobs back to back, so that jobs start, run and end (and
    are acknowledged) as Redis goes away. The same worker process serves after each one."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        front = stack.front(REDIS_URL=url)
        worker = stack.worker([TINY], front, REDIS_URL=url)
        for _ in range(3):
            statuses, outage = [], threading.Event()

            def client(statuses=statuses, outage=outage) -> None:
                while not outage.is_set():
                    statuses.append(post(front, "/v1/chat/completions", LONG)[0])

            clients = [threading.Thread(target=client) for _ in range(4)]
            for thread in clients:
                thread.start()
            time.sleep(1)
            outage.set()
            server.stop()
            for thread in clients:
                thread.join(60)
            assert not any(t.is_alive() for t in clients)
            assert set(statuses) <= {200, 503}, statuses

            server = EmbeddedRedis(tmp_path / "redis", port=server.port)
            server.start()
            wait_for_models(front, [TINY], 60)
            # The same worker process, not a restarted one: Celery 5.7 stopped it here now and
            # then (an AttributeError in kombu; see workers/celery.py).
            assert worker.poll() is None, worker.log.read_text()[-3000:]
            status, _, body = post(front, "/v1/chat/completions", LONG)
            assert status == 200, body
    finally:
        server.stop()
