"""The workers' Celery app; ``celery -A workers`` finds it here (Celery tries ``workers.celery``).

Each queue is a model name from the registry. The worker loads those models once, in its own
process (the pool is threads, so nothing forks after a model is loaded), runs one batched engine
per model, and announces itself with a heartbeat once it consumes.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from config.settings import Settings, celery_config

log = logging.getLogger(__name__)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("workers", include=["workers.tasks"])
    app.conf.update(celery_config(settings.redis_url, settings.redis_sentinel_master))
    # Threads: the engine batches in its own thread; each task thread waits for its job. One
    # process per worker means the model loads once and CUDA never meets a fork.
    app.conf.worker_pool = "threads"
    # Resolved in on_worker_init to the engines' batch sizes unless -c was given.
    app.conf.worker_concurrency = "auto"
    return app


app = create_celery()


@signals.worker_init.connect
def on_worker_init(sender, **_: object) -> None:
    from workers.runtime import runtime

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
    )
    queues = sorted(sender.app.amqp.queues.consume_from or {})
    runtime.load(queues, Settings.from_env())
    if sender.concurrency == "auto":
        # The queue is the backpressure: hold no more jobs than the engines can batch.
        sender.concurrency = runtime.slots()
    log.info("concurrency %s for queues %s", sender.concurrency, ", ".join(queues))


@signals.worker_ready.connect
def on_worker_ready(sender, **_: object) -> None:
    from workers.runtime import runtime

    runtime.announce(getattr(sender, "hostname", None))


@signals.worker_shutting_down.connect
def on_worker_shutting_down(**_: object) -> None:
    from workers.runtime import runtime

    runtime.drain(Settings.from_env().shutdown_timeout)


@signals.worker_shutdown.connect
def on_worker_shutdown(**_: object) -> None:
    from workers.runtime import runtime

    runtime.shutdown()
