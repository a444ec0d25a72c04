"""What every engine is to its worker (:class:`Engine`), and the loop they share
(:class:`EngineLoop`): a thread that sleeps until there is work, runs one step at a time under a
clock the watchdog reads, and stops when told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar, cast

from config.events import Tokenized
from config.protocol import Job
from config.status import EngineLoad
from workers.engine.io import Ticket

Work = TypeVar("Work")
T = TypeVar("T")


class Engine(Protocol):
    """One model's engine, as the worker's runtime, heartbeat, watchdog and bulk feeder use it."""

    name: str
    info: dict[str, str | int]  # what the heartbeat tells of it (device, dtype), set by loading

    def submit(self, job: Job) -> Ticket:
        """Check ``job`` and queue it; raise :class:`~workers.engine.errors.JobFailed`."""
        ...

    def tokenize(self, job: Job) -> Tokenized:
        """Answer a tokenize or detokenize job at once, with the model's tokenizer; raise
        :class:`~workers.engine.errors.JobFailed`."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def abort(self, message: str) -> None:
        """End every job in flight with an error (a shutdown that cannot wait any longer)."""
        ...

    def load(self) -> EngineLoad: ...

    def slots(self) -> int:
        """How many jobs it runs at once (the worker takes as many from its queue)."""
        ...

    def bulk_room(self) -> int:
        """How many more bulk jobs it would take now."""
        ...

    def stalled(self, timeout: float) -> bool:
        """Whether a step has run ``timeout`` seconds, or its thread died with work."""
        ...


class EngineLoop(Generic[Work]):
    """The thread, the lock and the step clock of an engine. A subclass says when it has work
    (:meth:`_has_work`, under the lock), takes a step's work (:meth:`_take`, under the lock)
    and runs it (:meth:`_run_step`, outside the lock, timed with :meth:`_timed_step`)."""

    info: dict[str, str | int]  # what the heartbeat tells of it (set by loading)

    def __init__(self, name: str) -> None:
        self.name = name
        self.info = {}
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._step_started: float | None = None  # monotonic time the step under way began
        # Work that must not run during a step (changing the model), run by the engine's thread
        # before its next one: see between_steps.
        self._between: list[tuple[Callable[[], Any], Future[Any]]] = []

    def _has_work(self) -> bool:
        raise NotImplementedError

    def _take(self) -> Work:
        raise NotImplementedError

    def _run_step(self, work: Work) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            pending, self._between = self._between, []
            self._lock.notify()
        for _, done in pending:  # never run: their callers hear why
            if done.set_running_or_notify_cancel():
                done.set_exception(RuntimeError(f"the engine of {self.name} has stopped"))
        if self._thread:
            self._thread.join(timeout=30)

    def between_steps(self, change: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``change`` on the engine's thread between two steps (while no forward pass
        runs), wait for it, and return what it returns or raise what it raised."""
        done: Future[Any] = Future()
        with self._lock:
            if self._stopping:
                raise RuntimeError(f"the engine of {self.name} has stopped")
            self._between.append((change, done))
            self._lock.notify()
        try:
            result: T = done.result(timeout)
        except FutureTimeout:
            if not done.cancel():  # it has begun: it ends soon
                return cast(T, done.result())
            raise TimeoutError(
                f"the engine of {self.name} did not finish its step within {timeout:g} s"
            ) from None
        return result

    def _run_between(self) -> None:
        with self._lock:
            changes, self._between = self._between, []
        for change, done in changes:
            if not done.set_running_or_notify_cancel():  # its caller gave up waiting
                continue
            try:
                done.set_result(change())
            except Exception as exc:  # noqa: BLE001 - the caller gets it
                done.set_exception(exc)

    def _wake(self) -> None:
        """New work is there (called with the lock held)."""
        self._lock.notify()

    def step_seconds(self) -> float:
        """Seconds the step under way has run; 0 between steps."""
        started = self._step_started
        return 0.0 if started is None else time.monotonic() - started

    def stalled(self, timeout: float) -> bool:
        """Whether one step has run for ``timeout`` seconds (a hung kernel, a deadlock), or the
        engine's thread is gone while it has work."""
        if self.step_seconds() >= timeout:
            return True
        dead = self._thread is not None and not self._thread.is_alive() and not self._stopping
        return dead and self._has_work()

    @contextmanager
    def _timed_step(self) -> Iterator[float]:
        """``with self._timed_step() as started:`` around a step, so that :meth:`step_seconds`
        counts it."""
        self._step_started = started = time.monotonic()
        try:
            yield started
        finally:
            self._step_started = None

    def _still_waiting(self) -> bool:
        """While events wait for Redis, the step is not stuck: its clock starts again. False
        once the engine is stopping (the wait gives up)."""
        self._step_started = time.monotonic()
        return not self._stopping

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._stopping or self._between or self._has_work()):
                    self._lock.wait()
                if self._stopping:
                    return
                between = bool(self._between)
                work = None if between else self._take()
            if between:
                self._run_between()
            else:
                self._run_step(work)  # type: ignore[arg-type]  # taken when nothing was between
