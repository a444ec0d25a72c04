"""The OpenAI API: one route module per endpoint family, registered on :data:`bp`."""

from app.api import (  # noqa: F401  (the routes register themselves on the blueprint)
    adapters,
    batches,
    chat,
    completions,
    conversations,
    edits,
    embeddings,
    files,
    models,
    responses,
    scoring,
    tokens,
)
from app.api.blueprint import bp, root

__all__ = ["bp", "root"]
