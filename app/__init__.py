"""The Flask front: validates OpenAI requests, enqueues jobs, relays their events.

It never imports torch or transformers; the workers do the model work.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from celery import Celery
from flask import Config, Flask

from config.redisconn import Replicas, connect
from config.registry import load_registry
from config.settings import Settings, celery_config
from config.tracing import instrument_flask

if TYPE_CHECKING:
    from app.services import Services


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from app.jsonenc import JSONProvider

    app = Flask(__name__)
    app.json = JSONProvider(app)
    settings = Settings.from_env()
    app.config.from_mapping(
        REDIS_URL=settings.redis_url,
        REDIS_SENTINEL_MASTER=settings.redis_sentinel_master,
        API_KEYS=settings.api_keys,
        ADMIN_API_KEYS=settings.admin_api_keys,
        WORKER_API_TIMEOUT=settings.worker_api_timeout,
        QUEUE_TIMEOUT=settings.queue_timeout,
        MODELS_FILE=settings.models_file,
        MAX_QUEUED_JOBS=settings.max_queued_jobs,
        RATE_LIMITS=settings.rate_limits,
        KEY_WEIGHTS=settings.key_weights,
        # Flask answers a larger body with 413 (an OpenAI-shaped one, via the error handlers).
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        CORS_ORIGINS=settings.cors_origins,
        SHUTDOWN_TIMEOUT=settings.shutdown_timeout,
        MAX_JSON_DEPTH=settings.max_json_depth,
        MAX_REQUEST_CHOICES=settings.max_request_choices,
        MAX_REQUEST_TOKENS=settings.max_request_tokens,
        MAX_EMBEDDING_INPUTS=settings.max_embedding_inputs,
        RESPONSES_TTL=settings.responses_ttl,
        OWNER_HASH_SECRET=settings.owner_hash_secret,
        FILE_MAX_BYTES=settings.file_max_bytes,
        BATCH_MAX_LINES=settings.batch_max_lines,
        FILES_TTL=settings.files_ttl,
        BATCHES_TTL=settings.batches_ttl,
        FILES_DIR=settings.files_dir,
        REDIS_WAIT_MS=settings.redis_wait_ms,
    )
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
    )

    from app.api import bp, root
    from app.errors import register_error_handlers
    from app.health import bp as health_bp
    from app.metrics import start_timer
    from app.openapi import bp as openapi_bp
    from app.playground import bp as playground_bp
    from app.services import EXTENSION

    register_error_handlers(app)
    services = build_services(app.config, celery_init_app(app))
    app.extensions[EXTENSION] = services  # the one entry: see app.services
    app.before_request(start_timer)
    app.after_request(services.metrics.count_request)
    app.register_blueprint(bp)
    app.register_blueprint(root)
    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(playground_bp)
    instrument_flask(app)  # only when OTEL_TRACES_EXPORTER asks for traces
    if app.config["CORS_ORIGINS"]:  # off unless configured: browsers may not call by default
        from flask_cors import CORS

        CORS(app, origins=app.config["CORS_ORIGINS"], expose_headers=["x-ratelimit-*"])
    return app


def celery_init_app(app: Flask) -> Celery:
    """The front's Celery app: a producer only (it sends tasks by name, imports no task code)."""
    celery = Celery(app.name)
    celery.conf.update(celery_config(app.config["REDIS_URL"], app.config["REDIS_SENTINEL_MASTER"]))
    return celery


def build_services(config: Config, celery: Celery) -> Services:
    """Every service of the front, each given its collaborators and the settings it uses."""
    from app.adapters import AdapterService, RuntimeAdapters
    from app.batches.lines import BatchLines
    from app.batches.service import BatchService, batch_counts
    from app.blobs import BlobStore, DirectoryBlobs, RedisBlobs
    from app.caps import Caps
    from app.conversations.service import ConversationService
    from app.conversations.store import ConversationStore
    from app.events import EventHub
    from app.files import FileStore
    from app.jobs import JobService
    from app.limits import RateLimiter
    from app.liveness import Liveness
    from app.metrics import Metrics
    from app.model_status import ModelStatus
    from app.openapi import build_spec
    from app.owners import KeyWeights, Owners
    from app.responses.service import ResponseService
    from app.responses.store import ResponseStore
    from app.services import Services
    from app.serving.embeddings import EmbeddingService
    from app.serving.generation import GenerationService
    from app.serving.scoring import ScoringService
    from app.serving.tokens import TokenService

    # A bounded pool: under load, greenlets wait for a connection instead of opening more, so
    # the count of Redis connections stays constant whatever the number of open requests.
    redis_client = functools.partial(
        connect, config["REDIS_URL"], config["REDIS_SENTINEL_MASTER"], timeout=10
    )
    client = redis_client(
        blocking=32,
        health_check_interval=30,
        client_name="llm-front",  # named in CLIENT LIST, for operators and bench/load.py
    )
    # The event subscriptions get a client of their own: one connection, never health-checked
    # (see app/events.py for why).
    events_client = redis_client(blocking=1, client_name="llm-front-events")
    registry = load_registry(config["MODELS_FILE"])
    # Writes that must outlive a failover wait for a replica (none: no wait).
    replicas = Replicas(client, config["REDIS_WAIT_MS"])
    hub = EventHub(events_client)
    status = ModelStatus(client, Liveness(client), registry)
    limits = RateLimiter(client, config["RATE_LIMITS"])
    blobs: BlobStore = RedisBlobs(client)
    if config["FILES_DIR"]:
        blobs = DirectoryBlobs(config["FILES_DIR"])
    files = FileStore(
        client,
        blobs,
        config["FILES_TTL"],
        config["FILE_MAX_BYTES"],
        config["BATCH_MAX_LINES"],
        replicas,
    )
    # What the metrics read at a scrape; the job service reports each job's events to them.
    metrics = Metrics(
        lambda: hub.open_streams,
        status.rows,
        functools.partial(batch_counts, client),
        status.key_loads,
    )
    owners = Owners(client, bool(config["API_KEYS"]), config.get("OWNER_HASH_SECRET"))
    runtime_adapters = RuntimeAdapters(client, registry)
    jobs = JobService(
        celery,
        client,
        hub,
        registry,
        config["WORKER_API_TIMEOUT"],
        max_queued=config["MAX_QUEUED_JOBS"],
        queue_timeout=config["QUEUE_TIMEOUT"],
        metrics=metrics,
        key_of=KeyWeights(owners, config["KEY_WEIGHTS"]).current,
        more_models=runtime_adapters.get,
    )
    caps = Caps(
        config["MAX_REQUEST_CHOICES"], config["MAX_EMBEDDING_INPUTS"], config["MAX_REQUEST_TOKENS"]
    )
    generation = GenerationService(jobs, limits, caps)
    embeddings = EmbeddingService(jobs, limits, caps)
    scoring = ScoringService(jobs, limits, caps)
    # Streams read again block on Redis between events: a pool of their own, so that many
    # of them never take the connections every other request needs.
    replays = redis_client(blocking=64, client_name="llm-front-replays")
    # Conversations are kept as long as responses, from their last change.
    conversations = ConversationStore(client, config["RESPONSES_TTL"], replicas)
    responses = ResponseService(
        jobs,
        ResponseStore(client, config["RESPONSES_TTL"], replicas),
        limits,
        config["MAX_REQUEST_TOKENS"],
        replays,
        conversations,
    )
    # Batch lines run through the endpoints' own services.
    lines = BatchLines(generation, embeddings, responses)
    batches = BatchService(
        client, files, limits, lines, config["BATCHES_TTL"], config["BATCH_MAX_LINES"], replicas
    )
    return Services(
        jobs=jobs,
        limits=limits,
        owners=owners,
        metrics=metrics,
        status=status,
        files=files,
        generation=generation,
        embeddings=embeddings,
        scoring=scoring,
        tokens=TokenService(jobs),
        responses=responses,
        conversations=ConversationService(conversations),
        batches=batches,
        adapters=AdapterService(client, jobs, runtime_adapters),
        openapi=functools.cache(functools.partial(build_spec, registry)),
    )
