"""A worker's bulk feeder: takes bulk work (flex-tier requests first, then batch lines from its
models' bulk queues), one at a time, only while an engine has room that interactive work leaves
(``engine.bulk_room()``), so bulk work fills idle capacity and never takes a slot an interactive
request is waiting for.

A line taken moves (LMOVE) into the worker's processing list, and leaves it once its result is
recorded: if the worker dies, the workers' reaper puts its processing list back in the queues;
if the result could not be recorded (Redis went away as the line ended), the line is queued
again. A result is recorded once whichever run records it (``workers/io.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import redis

from config.keys import batch_progress, batch_queue, bulk_processing, bulk_queue, flex_queue
from config.protocol import CANCELLED, Job, MalformedMessage, decode, job_from_wire
from workers.engine.base import Engine

log = logging.getLogger(__name__)

IDLE = 0.2  # seconds between looks at the queues when there is nothing to take
RETRY_FOR = 600.0  # seconds a finished line keeps trying to reach Redis to leave its list


class BulkFeeder:
    def __init__(
        self,
        client: redis.Redis,
        engines: Mapping[str, Engine],
        worker_id: str,
        run: Callable[[object], str],
    ) -> None:
        self.client = client
        self.engines = engines  # model name -> engine (adapters share one)
        self.processing = bulk_processing(worker_id)
        self.run = run  # the runtime's: runs a job on its engine to its end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bulk-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                took = self.feed()
            except redis.RedisError as exc:
                log.warning("bulk feeder: %s; retrying", exc)
                took = False
            if not took:
                self._stop.wait(IDLE)

    def feed(self) -> bool:
        """Take at most one line for each model whose engine has room, going round the batches
        waiting for it; whether any line was taken."""
        took = False
        for name, engine in self.engines.items():
            if engine.bulk_room() <= 0:
                continue
            raw = self.client.lmove(flex_queue(name), self.processing, "RIGHT", "LEFT")
            if raw is not None:  # a flex request, whose client waits: before batch lines
                took = True
                threading.Thread(target=self._run, args=(raw,), daemon=True).start()
                time.sleep(0.01)
                continue
            # Round robin: the batch at the end of the list moves to its front.
            batch = self.client.lmove(bulk_queue(name), bulk_queue(name), "RIGHT", "LEFT")
            if batch is None:
                continue
            batch = batch.decode() if isinstance(batch, bytes) else batch
            raw = self.client.lmove(batch_queue(batch), self.processing, "RIGHT", "LEFT")
            if raw is None:  # nothing left in it (done, or cancelled): forget it here
                self.client.lrem(bulk_queue(name), 0, batch)
                continue
            self.client.hincrby(batch_progress(batch), "taken", 1)
            took = True
            threading.Thread(target=self._run, args=(raw,), daemon=True).start()
            time.sleep(0.01)  # let the engine count it before asking for room again
        return took

    def _run(self, raw: bytes) -> None:
        try:
            job = job_from_wire(decode(raw))
        except (MalformedMessage, ValueError) as exc:
            log.error("dropping a malformed bulk job: %s", exc)
            self.client.lrem(self.processing, 1, raw)  # type: ignore[arg-type]  # bytes: as stored
            return
        outcome = None
        try:
            outcome = self.run(job)
        except Exception:  # noqa: BLE001 - a line must leave the list whatever happened
            log.exception("bulk job %s failed", job.get("id"))
        deadline = time.monotonic() + RETRY_FOR
        while time.monotonic() < deadline:
            try:
                key = job.get("result_key")
                lost = job.get("batch") and not (key and self.client.exists(key))
                if outcome != CANCELLED and lost:
                    requeue(self.client, job, raw)  # its result was lost: it runs again
                self.client.lrem(self.processing, 1, raw)  # type: ignore[arg-type]  # as stored
                return
            except redis.RedisError:
                time.sleep(1)
        log.error("bulk job %s: could not leave the processing list", job.get("id"))


def requeue(client: redis.Redis, job: Job, raw: bytes | str) -> None:
    """Put a batch line back first in its batch's line, which waits for its model again (a
    flex request back first in its model's line: dropped when taken if its client has gone)."""
    batch = job.get("batch")
    if not batch:
        client.rpush(flex_queue(job["model"]), raw)
        return
    pipe = client.pipeline(transaction=True)
    pipe.rpush(batch_queue(batch), raw)
    pipe.hincrby(batch_progress(batch), "taken", -1)
    pipe.lrem(bulk_queue(job["model"]), 0, batch)
    pipe.lpush(bulk_queue(job["model"]), batch)
    pipe.execute()
