"""Model engines: plain modules (torch + transformers, no Flask, no Celery).

An engine owns one loaded model and a thread that runs every in-flight job in one batched forward
pass per step. It talks to the outside world through a :class:`JobIO`: it hands over each step's
events in one call and learns which jobs were cancelled.
"""

from workers.engine.errors import InvalidRequest, JobFailed
from workers.engine.generation import GenerationEngine
from workers.engine.io import JobIO, Ticket

__all__ = ["GenerationEngine", "InvalidRequest", "JobFailed", "JobIO", "Ticket"]
