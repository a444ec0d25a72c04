"""The Celery task: a turn on a model's queue, handed to the worker's runtime, which runs the
job its model's lanes give it (config/lanes.py)."""

from __future__ import annotations

from celery import shared_task

from config.protocol import TURN_TASK
from workers.runtime import runtime


@shared_task(name=TURN_TASK)
def turn(model: object) -> str:
    return runtime.take(str(model))


# A job as the task's own argument, as fronts sent them before lanes: what such a front (during a
# rolling upgrade), or its messages still queued, send is run as before, first come first served.
@shared_task(name="llm.generate")
def generate(job: object) -> str:
    return runtime.run(job)


@shared_task(name="llm.embed")
def embed(job: object) -> str:
    return runtime.run(job)
