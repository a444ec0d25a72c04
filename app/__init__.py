"""The Flask front: validates OpenAI requests, enqueues jobs, relays their events.

It never imports torch or transformers; the workers do the model work.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import Flask

from config.redisconn import connect
from config.registry import load_registry
from config.settings import Settings, celery_config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from app.jsonenc import JSONProvider

    app = Flask(__name__)
    app.json = JSONProvider(app)
    settings = Settings.from_env()
    app.config.from_mapping(
        REDIS_URL=settings.redis_url,
        REDIS_SENTINEL_MASTER=settings.redis_sentinel_master,
        API_KEYS=settings.api_keys,
        WORKER_API_TIMEOUT=settings.worker_api_timeout,
        QUEUE_TIMEOUT=settings.queue_timeout,
        MODELS_FILE=settings.models_file,
        MAX_QUEUED_JOBS=settings.max_queued_jobs,
        RATE_LIMITS=settings.rate_limits,
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
    )
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
    )

    from app.blobs import DirectoryBlobs, RedisBlobs
    from app.errors import register_error_handlers
    from app.events import EventHub
    from app.files import FileStore
    from app.jobs import JobService
    from app.limits import RateLimiter
    from app.metrics import Metrics, count_request, start_timer
    from app.responses.store import ResponseStore

    register_error_handlers(app)
    celery = celery_init_app(app)
    # A bounded pool: under load, greenlets wait for a connection instead of opening more, so
    # the count of Redis connections stays constant whatever the number of open requests.
    client = connect(
        app.config["REDIS_URL"],
        app.config["REDIS_SENTINEL_MASTER"],
        blocking=32,
        timeout=10,
        health_check_interval=30,
        client_name="llm-front",  # named in CLIENT LIST, for operators and bench/load.py
    )
    app.extensions["redis"] = client
    # The event subscriptions get a client of their own: one connection, never health-checked
    # (see app/events.py for why).
    events_client = connect(
        app.config["REDIS_URL"],
        app.config["REDIS_SENTINEL_MASTER"],
        blocking=1,
        timeout=10,
        client_name="llm-front-events",
    )
    app.extensions["jobs"] = JobService(
        celery,
        client,
        EventHub(events_client),
        load_registry(app.config["MODELS_FILE"]),
        app.config["WORKER_API_TIMEOUT"],
        max_queued=app.config["MAX_QUEUED_JOBS"],
        queue_timeout=app.config["QUEUE_TIMEOUT"],
    )
    app.extensions["limits"] = RateLimiter(client, app.config["RATE_LIMITS"])
    app.extensions["responses"] = ResponseStore(client, app.config["RESPONSES_TTL"])
    blobs = (
        DirectoryBlobs(app.config["FILES_DIR"]) if app.config["FILES_DIR"] else RedisBlobs(client)
    )
    app.extensions["files"] = FileStore(client, blobs, app.config["FILES_TTL"])
    app.extensions["metrics"] = app.extensions["jobs"].metrics = Metrics(app.extensions["jobs"])
    app.before_request(start_timer)
    app.after_request(count_request)

    from app.api import bp
    from app.health import bp as health_bp
    from app.metrics import bp as metrics_bp
    from app.openapi import bp as openapi_bp
    from app.playground import bp as playground_bp

    app.register_blueprint(bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(playground_bp)
    if app.config["CORS_ORIGINS"]:  # off unless configured: browsers may not call by default
        from flask_cors import CORS

        CORS(app, origins=app.config["CORS_ORIGINS"], expose_headers=["x-ratelimit-*"])
    return app


def celery_init_app(app: Flask) -> Celery:
    """The front's Celery app: a producer only (it sends tasks by name, imports no task code)."""
    celery = Celery(app.name)
    celery.conf.update(celery_config(app.config["REDIS_URL"], app.config["REDIS_SENTINEL_MASTER"]))
    app.extensions["celery"] = celery
    return celery
