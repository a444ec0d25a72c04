"""Celery tasks: thin wrappers that hand a JSON job to the worker's runtime."""

from __future__ import annotations

from celery import shared_task

from config.protocol import EMBED_TASK, GENERATE_TASK
from workers.runtime import runtime


@shared_task(name=GENERATE_TASK)
def generate(job: object) -> str:
    return runtime.run(job)  # checked there: config.protocol.job_from_wire


@shared_task(name=EMBED_TASK)
def embed(job: object) -> str:
    return runtime.run(job)
