"""The Celery task: a turn on a model's queue, handed to the worker's runtime, which runs the
job its model's lanes give it (config/lanes.py)."""

from __future__ import annotations

from celery import shared_task

from config.protocol import TURN_TASK
from workers.runtime import runtime


@shared_task(name=TURN_TASK)
def turn(model: object) -> str:
    return runtime.take(str(model))
