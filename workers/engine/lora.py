"""LoRA adapters on an engine's model: added and removed while it serves.

The first adapter wraps the model in a PEFT model (one copy of the base weights; each row of a
batch names its adapter, the base's rows ``__base__``); the last one removed unwraps it, so the
base runs its own leaner forward again. Each adapter gets a name never used before in the
process: the prefix cache keys blocks by it, and an adapter loaded later under the same public
name must not read another's blocks.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from config.protocol import Job
from workers.engine.admission import Admission
from workers.engine.decoder import decoder_for
from workers.engine.embedding import EmbeddingJob
from workers.engine.errors import JobFailed
from workers.engine.scheduler import Scheduler
from workers.engine.sequences import BASE, Sequence

T = TypeVar("T")

log = logging.getLogger(__name__)

_numbers = itertools.count()


def adapter_name() -> str:
    """A name for a new adapter, unique in this process."""
    return f"adapter{next(_numbers)}"


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def read_adapter(source: str) -> tuple[Any, dict[str, Any]]:
    """An adapter's config and weights, read from ``source`` (a directory PEFT saved, or a hub
    id); raises for a path that holds none. Read apart from :func:`attach`, so that an engine
    reads it while its batch goes on."""
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    config = PeftConfig.from_pretrained(source)
    config.inference_mode = True
    return config, load_peft_weights(source)


def attach(model: Any, name: str, adapter: tuple[Any, dict[str, Any]]) -> Any:
    """``model`` with ``adapter`` (from :func:`read_adapter`) added as ``name``, wrapped in a
    PEFT model if it was not one. An adapter that does not fit the model (one made for another)
    raises, and what it had added is removed first: the model is as it was."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict

    config, weights = adapter
    if is_peft(model):
        model.add_adapter(name, config)
    else:
        model = PeftModel(model, config, adapter_name=name)
    try:
        set_peft_model_state_dict(model, weights, adapter_name=name)
    except Exception:
        detach(model, name)
        raise
    return model.eval()


def detach(model: Any, name: str) -> Any:
    """``model`` without the adapter ``name``: the base model alone once it was the last."""
    if set(model.peft_config) == {name}:
        return model.unload()  # the LoRA layers out, the base weights as they were
    model.delete_adapter(name)
    return model


class AdapterServing:
    """What a generation engine does to serve adapters loaded while it runs (a mixin of
    :class:`~workers.engine.generation.GenerationEngine`, whose state it names here)."""

    model: Any
    peft: bool
    decode_forward: Any
    adapters: dict[str, str]
    admission: Admission
    _lock: threading.Condition
    _scheduler: Scheduler
    _embeddings: deque[EmbeddingJob]
    _embedding_now: list[EmbeddingJob]

    if TYPE_CHECKING:  # the engine's

        @property
        def _rows(self) -> list[Sequence]: ...

        def between_steps(self, change: Callable[[], T], timeout: float | None = None) -> T: ...

    def load_adapter(self, name: str, source: str, timeout: float = 600) -> None:
        """Serve the LoRA adapter saved at ``source`` as the model ``name``: added to the model
        between two steps. Raises what stopped it (a path that holds no adapter, one made for
        another model)."""

        read = read_adapter(source)  # from disk, while the batch goes on

        def add() -> None:
            adapter = adapter_name()
            self._use_model(attach(self.model, adapter, read))
            with self._lock:
                self.adapters[name] = adapter

        self.between_steps(add, timeout)

    def unload_adapter(self, name: str, timeout: float = 600) -> None:
        """Stop serving the adapter ``name``: new jobs for it are refused at once; it leaves the
        model once its running and waiting sequences have ended."""
        with self._lock:
            adapter = self.adapters.pop(name, None)
        if adapter is None:
            return

        def remove() -> bool:
            # Between steps, every sequence is running or waiting (none is half-admitted).
            with self._lock:
                seqs = self._rows + self._scheduler.waiting()
                embeddings = list(self._embeddings) + self._embedding_now
            if any(s.adapter == adapter and s.finish_reason is None for s in seqs) or any(
                e.adapter == adapter and not e.ticket.finished for e in embeddings
            ):
                return False
            self._use_model(detach(self.model, adapter))
            return True

        while not self.between_steps(remove, timeout):
            time.sleep(0.05)

    def _check_adapter(self, adapter: str, job: Job) -> None:
        """(Under the lock.) The job's adapter is still there: no sequence of an adapter joins
        once its unloading began."""
        if adapter != BASE and adapter not in self.adapters.values():
            raise JobFailed(f"The model {job.get('model')} was unloaded from this worker.")

    def _use_model(self, model: Any) -> None:
        """Run ``model`` from the next step on: the same weights, with other adapters."""
        self.model = self.admission.model = model
        self.peft = self.admission.adapters = is_peft(model)
        self.decode_forward = decoder_for(model) or model
