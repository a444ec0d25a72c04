"""A worker's quick feeder: takes quick jobs (tokenize, detokenize) from its models' quick lists
the moment they come, and answers each at once, outside the engines (``config.keys.quick_queue``)
so that they never wait behind generation for a slot. Any worker of the model may take one; a
quick job lost with its worker is run again by its front, as any other job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import redis

from config.keys import quick_queue
from config.protocol import MalformedMessage, decode

log = logging.getLogger(__name__)

WAIT = 1  # seconds one look at the lists blocks, so that a stop is noticed
THREADS = 4  # quick jobs answered at once; the feeder takes no more while they run


class QuickFeeder:
    def __init__(
        self, client: redis.Redis, models: Sequence[str], run: Callable[[object], str]
    ) -> None:
        self.client = client
        self.lists = [quick_queue(model) for model in models]
        self.run = run  # the runtime's: answers a quick job without its engine's batch
        self._stop = threading.Event()
        self._room = threading.BoundedSemaphore(THREADS)
        self._thread = threading.Thread(target=self._loop, name="quick-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._room.acquire(timeout=WAIT):  # taken only with a thread to answer it
                continue
            try:
                found = self.client.brpop(self.lists, timeout=WAIT)
            except redis.RedisError as exc:
                self._room.release()
                log.warning("quick feeder: %s; retrying", exc)
                self._stop.wait(1)
                continue
            if not found:
                self._room.release()
                continue
            # A few at once: one long chat template never holds up the next answer.
            threading.Thread(target=self._answer, args=(found[1],), daemon=True).start()

    def _answer(self, raw: bytes | str) -> None:
        try:
            self.run(decode(raw))
        except (MalformedMessage, ValueError) as exc:
            log.error("dropping a malformed quick job: %s", exc)
        except Exception:  # noqa: BLE001 - one answer failing never stops the feeder
            log.exception("a quick job failed")  # its front sends it again (app/jobs.py ask)
        finally:
            self._room.release()
