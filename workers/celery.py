"""The workers' Celery app; ``celery -A workers`` finds it here (Celery tries ``workers.celery``).

Each queue is a model name from the registry. The worker loads those models once, in its own
process (the pool is threads, so nothing forks after a model is loaded), runs one batched engine
per model, and announces itself with a heartbeat once it consumes.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from config.protocol import TURN_TASK
from config.settings import Settings, celery_config
from config.tracing import instrument_worker

log = logging.getLogger(__name__)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    _closed_channels_raise_connection_errors()
    app = Celery("workers", include=["workers.tasks"])
    app.conf.update(celery_config(settings.redis_url, settings.redis_sentinel_master))
    # Threads: the engine batches in its own thread; each task thread waits for its job. One
    # process per worker means the model loads once and CUDA never meets a fork.
    app.conf.worker_pool = "threads"
    # Resolved in on_worker_init to the engines' batch sizes unless -c was given.
    app.conf.worker_concurrency = "auto"
    return app


def _closed_channels_raise_connection_errors() -> None:
    """Make kombu's Redis channel raise a connection error, not an AttributeError, once its
    connection is gone.

    Why: when Redis goes away while jobs run, Celery 5.7 detaches the lost connection's transport
    (``collect()``) before it closes the channel, and then both the channel's restore of
    unacknowledged jobs and the ack of a job that ends later look up that transport and fail
    with an AttributeError, which stops the whole worker ("Unrecoverable error"). kombu 5.7.0,
    the latest, has no fix. As a connection error, Celery logs it and carries on, and the worker
    reconnects once Redis is back. Nothing is lost: kombu re-queues unacknowledged jobs after its
    visibility timeout, a late copy of a finished job is dropped (its finished key), and a job
    whose worker is gone is run again by the front.
    """
    import redis
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "guarded", False):
        return

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel was closed")
        return original(self, asynchronous)

    _connparams.guarded = True  # type: ignore[attr-defined]  # a mark on the function
    # The Sentinel channel inherits it.
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]


app = create_celery()


@signals.worker_init.connect
def on_worker_init(sender, **_: object) -> None:
    instrument_worker()  # only when OTEL_TRACES_EXPORTER asks for traces
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

    def turn(model: str) -> None:  # one turn on a model's queue (config/lanes.py)
        sender.app.send_task(TURN_TASK, args=[model], queue=model)

    runtime.announce(getattr(sender, "hostname", None), turn)


@signals.worker_shutting_down.connect
def on_worker_shutting_down(**_: object) -> None:
    from workers.runtime import runtime

    runtime.drain(Settings.from_env().shutdown_timeout)


@signals.worker_shutdown.connect
def on_worker_shutdown(**_: object) -> None:
    from workers.runtime import runtime

    runtime.shutdown()
