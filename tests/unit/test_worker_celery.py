"""The workers' Celery app: its settings, and the guard on kombu's Redis channel."""

from types import SimpleNamespace

import pytest
import redis
from kombu.transport import redis as kombu_redis

from config.settings import Settings
from workers.celery import create_celery


def test_the_worker_app_runs_threads_and_speaks_json_only():
    app = create_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert app.conf.worker_pool == "threads"
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost


@pytest.mark.parametrize("transport", [None, SimpleNamespace(client=None)])
def test_a_channel_whose_connection_is_gone_raises_a_connection_error(transport):
    """What Celery's consumer meets after a lost connection: an error it logs and survives,
    where kombu alone raises AttributeError and the worker stops."""
    create_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)  # no connection needed
    channel.connection = transport
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
