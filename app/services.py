"""The front's services, built once by ``create_app`` with their collaborators, and the one way
a route reaches them: :func:`services`.

Only routes (and the hooks of their blueprints) call :func:`services`; a service is handed what
it uses when it is built, so it never looks another one up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

from app.adapters import AdapterService
from app.batches.service import BatchService
from app.conversations.service import ConversationService
from app.files import FileStore
from app.jobs import JobService
from app.limits import RateLimiter
from app.metrics import Metrics
from app.model_status import ModelStatus
from app.owners import Owners
from app.responses.service import ResponseService
from app.serving.embeddings import EmbeddingService
from app.serving.generation import GenerationService
from app.serving.scoring import ScoringService
from app.serving.tokens import TokenService

EXTENSION = "services"  # the key of the one entry in app.extensions


@dataclass(frozen=True)
class Services:
    jobs: JobService
    limits: RateLimiter
    owners: Owners
    metrics: Metrics
    status: ModelStatus
    files: FileStore
    generation: GenerationService  # chat, completions and edits
    embeddings: EmbeddingService
    scoring: ScoringService  # rerank and score
    tokens: TokenService  # tokenize and detokenize
    responses: ResponseService
    conversations: ConversationService
    batches: BatchService
    adapters: AdapterService  # LoRA adapters loaded and unloaded at run time
    openapi: Callable[[], dict[str, Any]]  # the OpenAPI document (built once, when first asked)


def services() -> Services:
    """The services of the current app."""
    found: Services = current_app.extensions[EXTENSION]
    return found
