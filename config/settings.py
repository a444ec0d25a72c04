"""Settings read from the environment, shared by the front (Flask config) and the workers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from config.redisconn import DEFAULT_MASTER, celery_broker


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _rate_limits() -> dict[str, dict[str, Any]]:
    """RATE_LIMITS (JSON) or RATE_LIMITS_FILE (a JSON file): {"<key>" or "*": {"rpm", "tpm"}}."""
    raw = os.environ.get("RATE_LIMITS")
    if not raw and os.environ.get("RATE_LIMITS_FILE"):
        with open(os.environ["RATE_LIMITS_FILE"]) as f:
            raw = f.read()
    limits = json.loads(raw) if raw else {}
    if not isinstance(limits, dict) or not all(isinstance(v, dict) for v in limits.values()):
        raise ValueError('rate limits must map a key (or "*") to {"rpm": N, "tpm": N}')
    return limits


def _key_weights() -> dict[str, float]:
    """KEY_WEIGHTS (JSON): {"<key>" or "*": weight}, each key's share of a busy model."""
    raw = os.environ.get("KEY_WEIGHTS")
    weights = json.loads(raw) if raw else {}
    if not isinstance(weights, dict) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) and 0.01 <= w <= 100
        for w in weights.values()
    ):
        raise ValueError('KEY_WEIGHTS must map a key (or "*") to a weight from 0.01 to 100')
    return {key: float(w) for key, w in weights.items()}


def default_cache_dir() -> str:
    """Where converted models are cached, beside Hugging Face's own cache."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(root, "llm-queue")


@dataclass(frozen=True)
class Settings:
    """Everything configurable by an environment variable; see the README for each one."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinel_master: str = DEFAULT_MASTER
    api_keys: list[str] = field(default_factory=list)
    admin_api_keys: list[str] = field(default_factory=list)  # may load and unload adapters
    redis_wait_ms: int = 1000  # a write that must outlive a failover waits for a replica
    worker_api_timeout: float = 100.0
    queue_timeout: float = 600.0
    embedding_batch_size: int = 64
    models_file: str | None = None
    heartbeat_interval: float = 2.0
    heartbeat_ttl: float = 6.0
    max_queued_jobs: int = 256
    shutdown_timeout: float = 60.0
    max_request_bytes: int = 8 * 1024 * 1024
    cors_origins: list[str] = field(default_factory=list)
    rate_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_weights: dict[str, float] = field(default_factory=dict)
    model_cache_dir: str = field(default_factory=lambda: default_cache_dir())
    device: str = "auto"
    dtype: str = "auto"
    int4_weights: bool = True  # 4-bit copies of a GGUF's 4-bit weights (see workers/int4.py)
    # Per-request caps (checked before anything is queued) and the engine's watchdog.
    max_json_depth: int = 64
    max_request_choices: int = 512
    max_request_tokens: int = 300_000
    max_embedding_inputs: int = 2048
    engine_stall_timeout: float = 120.0
    # Stored objects (responses): how long they live, and the secret of their owners' hashes.
    responses_ttl: int = 30 * 24 * 3600
    owner_hash_secret: str | None = None
    # Files and batches.
    file_max_bytes: int = 200 * 1024 * 1024
    batch_max_lines: int = 50_000
    files_ttl: int = 30 * 24 * 3600
    batches_ttl: int = 30 * 24 * 3600
    files_dir: str | None = None
    bulk_share: float = 0.25  # of a model's batch slots bulk work keeps while interactive waits
    prefix_cache_mb: int = 1024  # per chat model: the keys and values of prompt prefixes kept
    prompt_lookup_tokens: int = 4  # draft size of prompt-lookup speculative decoding (0: off)

    @classmethod
    def from_env(cls) -> Settings:
        """Build the settings from the process environment (read when called, never at import)."""
        return cls(
            redis_url=os.environ.get("REDIS_URL", cls.redis_url),
            redis_sentinel_master=os.environ.get(
                "REDIS_SENTINEL_MASTER", cls.redis_sentinel_master
            ),
            api_keys=_env_list("API_KEYS"),
            admin_api_keys=_env_list("ADMIN_API_KEYS"),
            redis_wait_ms=int(os.environ.get("REDIS_WAIT_MS", cls.redis_wait_ms)),
            worker_api_timeout=float(os.environ.get("WORKER_API_TIMEOUT", cls.worker_api_timeout)),
            queue_timeout=float(os.environ.get("QUEUE_TIMEOUT", cls.queue_timeout)),
            embedding_batch_size=int(
                os.environ.get("EMBEDDING_BATCH_SIZE", cls.embedding_batch_size)
            ),
            models_file=os.environ.get("MODELS_FILE") or None,
            heartbeat_interval=float(os.environ.get("HEARTBEAT_INTERVAL", cls.heartbeat_interval)),
            heartbeat_ttl=float(os.environ.get("HEARTBEAT_TTL", cls.heartbeat_ttl)),
            max_queued_jobs=int(os.environ.get("MAX_QUEUED_JOBS", cls.max_queued_jobs)),
            shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", cls.shutdown_timeout)),
            max_request_bytes=int(os.environ.get("MAX_REQUEST_BYTES", cls.max_request_bytes)),
            cors_origins=_env_list("CORS_ORIGINS"),
            rate_limits=_rate_limits(),
            key_weights=_key_weights(),
            model_cache_dir=os.environ.get("MODEL_CACHE_DIR") or default_cache_dir(),
            device=os.environ.get("DEVICE", cls.device),
            dtype=_dtype(os.environ.get("DTYPE", cls.dtype)),
            int4_weights=_switch("INT4_WEIGHTS", cls.int4_weights),
            max_json_depth=int(os.environ.get("MAX_JSON_DEPTH", cls.max_json_depth)),
            max_request_choices=int(os.environ.get("MAX_REQUEST_CHOICES", cls.max_request_choices)),
            max_request_tokens=int(os.environ.get("MAX_REQUEST_TOKENS", cls.max_request_tokens)),
            max_embedding_inputs=int(
                os.environ.get("MAX_EMBEDDING_INPUTS", cls.max_embedding_inputs)
            ),
            engine_stall_timeout=float(
                os.environ.get("ENGINE_STALL_TIMEOUT", cls.engine_stall_timeout)
            ),
            responses_ttl=int(os.environ.get("RESPONSES_TTL", cls.responses_ttl)),
            owner_hash_secret=os.environ.get("OWNER_HASH_SECRET") or None,
            file_max_bytes=int(os.environ.get("FILE_MAX_BYTES", cls.file_max_bytes)),
            batch_max_lines=int(os.environ.get("BATCH_MAX_LINES", cls.batch_max_lines)),
            files_ttl=int(os.environ.get("FILES_TTL", cls.files_ttl)),
            batches_ttl=int(os.environ.get("BATCHES_TTL", cls.batches_ttl)),
            files_dir=os.environ.get("FILES_DIR") or None,
            bulk_share=_share(os.environ.get("BULK_SHARE", cls.bulk_share)),
            prefix_cache_mb=int(os.environ.get("PREFIX_CACHE_MB", cls.prefix_cache_mb)),
            prompt_lookup_tokens=int(
                os.environ.get("PROMPT_LOOKUP_TOKENS", cls.prompt_lookup_tokens)
            ),
        )


def celery_config(redis_url: str, sentinel_master: str = DEFAULT_MASTER) -> dict[str, Any]:
    """Celery settings common to the front (producer) and the workers (consumers)."""
    return {
        **celery_broker(redis_url, sentinel_master),
        "broker_connection_retry_on_startup": True,
        # JSON only, both ways: a job or event is plain data, never serialized Python objects.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        # A job is acknowledged when it has run, so a worker killed mid-job does not lose it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "default",
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
    }


def _share(value: str | float) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise ValueError(f"BULK_SHARE must be between 0 and 1, not {value!r}")
    return share


def _switch(name: str, default: bool) -> bool:
    value = os.environ.get(name, "auto" if default else "off").strip().lower()
    if value not in ("auto", "off"):
        raise ValueError(f"{name} must be auto or off, not {value!r}")
    return value != "off"


def _dtype(value: str) -> str:
    allowed = ("auto", "float32", "float16", "bfloat16")
    if value not in allowed:
        raise ValueError(f"DTYPE must be one of {', '.join(allowed)}, not {value!r}")
    return value
