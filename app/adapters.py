"""LoRA adapters loaded at run time, on the front: ``POST /v1/load_lora_adapter`` and
``/v1/unload_lora_adapter`` (vLLM's names and shapes), and the stored adapters that requests may
name (see :mod:`config.adapters` for the entries, the commands and the replies).

Loading stores the entry, then tells every worker of the base model (a command on the base's
channel) and waits for each to answer: all loaded it, or the entry is withdrawn and whoever
loaded it unloads it. A worker that starts later loads it from the entry. Unloading withdraws
the entry first (new requests get 404 at once), then waits while each worker lets the adapter's
running sequences end.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import redis
from marshmallow import fields, validate

from app.errors import APIError
from app.jobs import JobService, queue_unavailable
from app.schemas import Lenient, load_request
from config.adapters import (
    LOAD,
    UNLOAD,
    AdapterEntry,
    AdapterReply,
    adapter_spec,
    entry_from_wire,
    reply_from_wire,
)
from config.keys import ADAPTERS, adapter_control, adapter_replies
from config.protocol import MalformedMessage, encode
from config.registry import CHAT, ModelSpec

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 300.0  # seconds the workers have to load an adapter, or to unload it
NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", error="not a valid model name")


class LoadAdapterSchema(Lenient):
    lora_name = fields.String(required=True, validate=NAME)
    lora_path = fields.String(required=True, validate=validate.Length(min=1))
    # Which served model it adapts (vLLM serves one; here it may be left out only then).
    base_model_name = fields.String(load_default=None, allow_none=True)


class UnloadAdapterSchema(Lenient):
    lora_name = fields.String(required=True)


class RuntimeAdapters:
    """The stored adapters that requests may name: those every worker of their base holds."""

    def __init__(self, client: redis.Redis, registry: dict[str, ModelSpec]) -> None:
        self.client = client
        self.registry = registry

    def get(self, name: str) -> ModelSpec | None:
        """The adapter ``name`` as a registry entry; None if no such adapter is ready."""
        entry = self.entry(name)
        return self._spec(entry) if entry is not None else None

    def entry(self, name: str) -> AdapterEntry | None:
        """The stored entry of the adapter ``name``, ready or not; None if there is none."""
        try:
            raw = self.client.hget(ADAPTERS, name)
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        return self._entry(raw) if raw is not None else None

    def all(self) -> list[ModelSpec]:
        try:
            raws = self.client.hvals(ADAPTERS)
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        entries = [entry for raw in raws if (entry := self._entry(raw)) is not None]
        return [spec for entry in entries if (spec := self._spec(entry)) is not None]

    def _spec(self, entry: AdapterEntry) -> ModelSpec | None:
        base = self.registry.get(entry["base"])
        if not entry.get("ready") or base is None:
            return None
        return adapter_spec(entry, base)

    @staticmethod
    def _entry(raw: bytes | str) -> AdapterEntry | None:
        try:
            return entry_from_wire(raw)
        except MalformedMessage:
            log.error("ignoring a malformed adapter entry: %.200r", raw)
            return None


class AdapterService:
    def __init__(self, client: redis.Redis, jobs: JobService, stored: RuntimeAdapters) -> None:
        self.client = client
        self.jobs = jobs
        self.stored = stored

    def load(self, body: Any) -> str:
        """Load an adapter on every worker of its base; vLLM's answer, as text."""
        data = load_request(LoadAdapterSchema(), body)
        name = data["lora_name"]
        if name in self.jobs.names or self.stored.get(name) is not None:
            raise APIError(400, f"The lora adapter '{name}' has already been loaded.", "lora_name")
        base = self._base(data["base_model_name"])
        entry: AdapterEntry = {
            "name": name,
            "base": base.name,
            "source": data["lora_path"],
            "created": int(time.time()),
            "ready": False,  # not to be named before every worker holds it
        }
        try:
            if not self.client.hsetnx(ADAPTERS, name, encode(entry)):
                raise APIError(
                    400, f"The lora adapter '{name}' has already been loaded.", "lora_name"
                )
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        try:
            replies = self._tell(LOAD, entry)
            failed = [r for r in replies if not r["ok"]]
            if not replies:
                raise APIError(
                    503,
                    f"No worker is serving the model `{base.name}` right now.",
                    "base_model_name",
                    "model_not_available",
                    "service_unavailable_error",
                )
            if failed:
                raise APIError(
                    400,
                    f"Loading the lora adapter '{name}' failed: {failed[0]['error']}",
                    "lora_path",
                )
            self.client.hset(ADAPTERS, name, encode({**entry, "ready": True}))
        except redis.RedisError as exc:
            self._withdraw(entry)
            raise queue_unavailable(exc) from exc
        except Exception:
            self._withdraw(entry)
            raise
        log.info("LoRA adapter %s loaded on %d workers of %s", name, len(replies), base.name)
        return f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, body: Any) -> str:
        """Unload an adapter loaded at run time, once its running sequences have ended."""
        data = load_request(UnloadAdapterSchema(), body)
        name = data["lora_name"]
        entry = self.stored.entry(name)
        if entry is None or not entry.get("ready"):
            if name in self.jobs.names:
                raise APIError(
                    400,
                    f"The model '{name}' is in the registry (MODELS_FILE); only adapters loaded "
                    "at run time can be unloaded.",
                    "lora_name",
                )
            raise APIError(
                404, f"The lora adapter '{name}' cannot be found.", "lora_name", "model_not_found"
            )
        try:
            self.client.hdel(ADAPTERS, name)  # requests naming it get 404 from now on
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        replies = self._tell(UNLOAD, entry)
        failed = [r for r in replies if not r["ok"]]
        if failed:  # no longer stored: the worker drops it at its next sync, or on a restart
            raise APIError(
                500,
                f"A worker could not unload the lora adapter '{name}': {failed[0]['error']}",
                code="worker_error",
            )
        log.info("LoRA adapter %s unloaded from %d workers", name, len(replies))
        return f"Success: LoRA adapter '{name}' removed successfully."

    def _base(self, name: str | None) -> ModelSpec:
        """The served base model an adapter is for: the one named, or the only chat model."""
        if name is None:
            chats = [s for s in self.jobs.registry.values() if s.kind == CHAT and not s.base]
            live = [s for s in chats if self.jobs.liveness.is_live(s.name)]
            if len(live) != 1:
                raise APIError(
                    400,
                    "Name the model the adapter is for: base_model_name (one of "
                    f"{', '.join(s.name for s in live) or 'the chat models'}).",
                    "base_model_name",
                )
            return live[0]
        base = self.jobs.resolve(name, CHAT)
        if base.base is not None:
            raise APIError(
                400, f"The model `{name}` is an adapter; name its base.", "base_model_name"
            )
        return base

    def _tell(self, op: str, entry: AdapterEntry) -> list[AdapterReply]:
        """Publish ``op`` to the workers of ``entry``'s base; each one's reply. 504 if some do
        not answer within :data:`ANSWER_TIMEOUT`."""
        reply = adapter_replies(uuid.uuid4().hex)
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(reply)
            command = {"op": op, "entry": entry, "reply": reply}
            told = int(self.client.publish(adapter_control(entry["base"]), encode(command)))
            replies: list[AdapterReply] = []
            deadline = time.monotonic() + ANSWER_TIMEOUT
            while len(replies) < told:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise APIError(
                        504,
                        f"{told - len(replies)} of {told} workers of `{entry['base']}` did not "
                        f"answer within {ANSWER_TIMEOUT:g} seconds.",
                        code="worker_timeout",
                        type_="timeout_error",
                    )
                message = pubsub.get_message(timeout=min(left, 1.0))
                if message is not None:
                    try:
                        replies.append(reply_from_wire(message["data"]))
                    except MalformedMessage as exc:
                        log.error("ignoring a malformed adapter reply: %s", exc)
            return replies
        except redis.RedisError as exc:
            raise queue_unavailable(exc) from exc
        finally:
            pubsub.close()

    def _withdraw(self, entry: AdapterEntry) -> None:
        """A load that failed: no longer stored; those that loaded it unload it."""
        try:
            self.client.hdel(ADAPTERS, entry["name"])
            command = {"op": UNLOAD, "entry": entry, "reply": adapter_replies("ignored")}
            self.client.publish(adapter_control(entry["base"]), encode(command))
        except redis.RedisError:
            log.warning(
                "could not withdraw adapter %s; its workers drop it at their next sync",
                entry["name"],
            )
