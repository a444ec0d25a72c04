"""A stuck engine is noticed: a worker whose model hangs mid-step (its heartbeat thread alive, so
it looks healthy) stops counting as live, its streaming client gets an error, its non-streamed
request runs again on another worker, /ready names it, and it exits non-zero."""

import json
import threading

from config.keys import claim_key
from tests.integration.conftest import FAULTY_STALL
from tests.integration.http import get, open_stream, post, read_frames
from tests.integration.test_abandoned import wait_for
from workers.watchdog import STALL_EXIT_CODE

BODY = {
    "model": FAULTY_STALL,
    "messages": [{"role": "user", "content": "Tell me a story."}],
    "max_tokens": 200,
    "ignore_eos": True,
    "temperature": 0,
}


def test_a_stalled_engine_is_noticed_and_its_work_moves_on(stack, front, redis_client, tmp_path):
    block = tmp_path / "block"
    # 0.1 s a step: both requests are still running when the second worker is up.
    hanging = stack.worker(
        [FAULTY_STALL],
        front,
        FAULTY_BLOCK_FILE=str(block),
        FAULTY_STEP_DELAY="0.1",
        ENGINE_STALL_TIMEOUT="2",
    )
    try:
        stream = open_stream(front, "/v1/chat/completions", {**BODY, "stream": True})
        first = json.loads(stream.readline().decode()[len("data: ") :])
        stream.readline()
        streamed_job = first["id"].removeprefix("chatcmpl-")
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(reply=post(front, "/v1/chat/completions", BODY))
        )
        thread.start()

        def claims() -> list[str]:
            keys = redis_client.scan_iter("llm:claim:*")
            return [k for k in keys if redis_client.get(k) == hanging.worker_id]

        wait_for(lambda: len(claims()) == 2)  # both requests run on the worker that will hang
        healthy = stack.worker([FAULTY_STALL], front)
        block.touch()  # its next forward pass blocks: a hung kernel

        frames = read_frames(stream)
        assert frames[-1] == "[DONE]"
        assert json.loads(frames[-2])["error"]["code"] == "worker_lost"
        status, _, ready = get(front, "/ready")
        assert status == 200
        assert {"worker": hanging.worker_id, "models": [FAULTY_STALL]} in ready["stalled"]

        thread.join(60)
        status, _, reply = result["reply"]
        assert status == 200, reply
        assert reply["usage"]["completion_tokens"] == 200
        retried = reply["id"].removeprefix("chatcmpl-")
        assert redis_client.get(claim_key(retried)) == healthy.worker_id
        assert redis_client.get(claim_key(streamed_job)) == hanging.worker_id

        assert hanging.wait(30) == STALL_EXIT_CODE
        assert "no step has finished for 2 s" in hanging.log.read_text()
    finally:
        block.unlink(missing_ok=True)
