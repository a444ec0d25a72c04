"""LoRA adapters loaded at run time, on a worker (see :mod:`config.adapters`): at start, the
stored adapters of the base models it serves are loaded into their engines; while it runs, it
follows the load and unload commands the front publishes for those bases, answers each, and
every :data:`SYNC_INTERVAL` makes what it holds match what is stored (a command missed while
Redis was away, an adapter whose loading the front gave up on).

An adapter it holds is one more model it serves (:class:`ServedModels`): its heartbeat lists it,
and its jobs, which come on the base's queue, run on the base's engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, Mapping, ValuesView

import redis

from config.adapters import (
    LOAD,
    AdapterEntry,
    AdapterReply,
    command_from_wire,
    entry_from_wire,
    same_adapter,
)
from config.keys import ADAPTERS, adapter_control
from config.protocol import MalformedMessage, encode
from workers.engine import GenerationEngine
from workers.engine.base import Engine

log = logging.getLogger(__name__)

SYNC_INTERVAL = 10.0  # seconds between comparisons of what is held with what is stored
LISTEN_WAIT = 1.0  # seconds one look for a command blocks, so that a stop is noticed


class ServedModels(Mapping[str, Engine]):
    """Model name -> its engine, read by several threads while adapters come and go: a change
    replaces the whole mapping, so a reader always walks a complete one."""

    def __init__(self) -> None:
        self._models: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Engine:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def items(self) -> ItemsView[str, Engine]:
        return self._models.items()

    def values(self) -> ValuesView[Engine]:
        return self._models.values()

    def update(self, more: Mapping[str, Engine]) -> None:
        with self._lock:
            self._models = {**self._models, **more}

    def remove(self, name: str) -> None:
        with self._lock:
            self._models = {k: v for k, v in self._models.items() if k != name}


class AdapterControl:
    """Keeps a worker's run-time adapters as stored. :meth:`sync` loads them as the worker
    loads its models (before Celery gives it any job); :meth:`start` then follows the commands,
    calling ``changed`` after each change of the models it serves (the runtime beats its
    heartbeat at once)."""

    def __init__(self, client: redis.Redis, served: ServedModels) -> None:
        self.client = client
        self.served = served
        self.worker_id = ""
        self.changed: Callable[[], None] = lambda: None
        # The base models it serves under their own names (whose queues it consumes).
        self.bases = {
            name: engine
            for name, engine in served.items()
            if isinstance(engine, GenerationEngine) and engine.name == name
        }
        self.loaded: dict[str, AdapterEntry] = {}  # adapter name -> its entry, as held here
        self._locks: dict[str, threading.Lock] = {}  # one change of an adapter at a time
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="adapters", daemon=True)

    def start(self, worker_id: str, changed: Callable[[], None]) -> None:
        """Follow the commands for its bases, answering as ``worker_id``."""
        self.worker_id, self.changed = worker_id, changed
        if self.bases:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sync(self) -> None:
        """Load the stored adapters of its bases it does not hold; unload (in the background:
        it waits for their sequences) those it holds that are no longer stored."""
        if not self.bases:
            return
        stored: dict[str, AdapterEntry] = {}
        for raw in self.client.hvals(ADAPTERS):
            try:
                entry = entry_from_wire(raw)
            except MalformedMessage as exc:
                log.error("ignoring a malformed adapter entry: %s", exc)
                continue
            if entry["base"] in self.bases:
                stored[entry["name"]] = entry
        for name, entry in stored.items():
            held = self.loaded.get(name)
            if held is None or not same_adapter(held, entry):
                try:
                    self.load(entry, wait=False)  # one being changed is left to its command
                except Exception:  # noqa: BLE001 - one bad adapter never stops the others
                    log.exception("could not load the adapter %s from %s", name, entry["source"])
        for name in set(self.loaded) - set(stored):
            threading.Thread(target=self.unload, args=(name,), daemon=True).start()

    def load(self, entry: AdapterEntry, wait: bool = True) -> None:
        """Serve ``entry``'s adapter (nothing if it is held already); raises what stopped it.
        Not ``wait``: nothing either while another change of that adapter is under way."""
        name = entry["name"]
        lock = self._lock_of(name)
        if not lock.acquire(blocking=wait):
            return
        try:
            held = self.loaded.get(name)
            if held is not None and same_adapter(held, entry):
                return
            if held is not None:  # the same name for another adapter: the old one first
                self._unload(name)
            engine = self.bases[entry["base"]]
            log.info("loading the LoRA adapter %s from %s", name, entry["source"])
            engine.load_adapter(name, entry["source"])
            self.loaded[name] = entry
            self.served.update({name: engine})
        finally:
            lock.release()
        self.changed()

    def unload(self, name: str) -> None:
        """Stop serving the adapter ``name``, once its sequences have ended."""
        with self._lock_of(name):
            self._unload(name)

    def _unload(self, name: str) -> None:
        entry = self.loaded.get(name)
        if entry is None:
            return
        self.served.remove(name)  # no longer listed: the fronts route nothing more to it here
        self.changed()
        log.info("unloading the LoRA adapter %s (after its running sequences)", name)
        self.bases[entry["base"]].unload_adapter(name)
        del self.loaded[name]

    def _lock_of(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _listen(self) -> None:
        channels = [adapter_control(base) for base in self.bases]
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*channels)
                self.sync()  # what it may have missed while it was not listening
                synced = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_WAIT)
                    if message is not None:
                        data = message["data"]
                        threading.Thread(target=self._obey, args=(data,), daemon=True).start()
                    if time.monotonic() - synced >= SYNC_INTERVAL:
                        self.sync()
                        synced = time.monotonic()
            except redis.RedisError as exc:
                log.warning("adapter commands: %s; listening again", exc)
                self._stop.wait(1)
            finally:
                pubsub.close()  # a subscription left open would be counted as a worker

    def _obey(self, raw: bytes | str) -> None:
        try:
            command = command_from_wire(raw)
        except MalformedMessage as exc:
            log.error("ignoring a malformed adapter command: %s", exc)
            return
        entry = command["entry"]
        reply: AdapterReply = {"worker": self.worker_id, "ok": True, "error": ""}
        try:
            if command["op"] == LOAD:
                self.load(entry)
            else:
                self.unload(entry["name"])
        except Exception as exc:  # noqa: BLE001 - the front hears why
            log.warning("adapter %s: %s failed: %s", entry["name"], command["op"], exc)
            reply = {"worker": self.worker_id, "ok": False, "error": str(exc)}
        try:
            self.client.publish(command["reply"], encode(reply))
        except redis.RedisError as exc:
            log.warning("could not answer the adapter command: %s", exc)
