"""GET /v1/models and /v1/models/<id>: the registry's models, and the adapters loaded at run
time, that have a live worker."""

from __future__ import annotations

from typing import Any

import redis
from flask import Response, jsonify

from app.api.blueprint import bp
from app.errors import APIError
from app.jobs import queue_unavailable
from app.services import services
from config.registry import ModelSpec


def model_card(name: str, spec: ModelSpec) -> dict[str, Any]:
    """A model as OpenAI lists it, with the root, parent and permission fields FastChat adds:
    ``root`` is the entry an alias names, ``parent`` the base model of a LoRA adapter; and
    ``capabilities``, as Ollama lists them: what requests it answers (``chat``,
    ``completions``, ``responses``, ``tools``, ``embeddings``)."""
    return {
        "id": name,
        "object": "model",
        "created": spec.created,
        "owned_by": spec.owned_by,
        "root": spec.name,
        "parent": spec.base,
        "capabilities": spec.capabilities,
        "permission": [
            {
                "id": f"modelperm-{name}",
                "object": "model_permission",
                "created": spec.created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": True,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }


def _known() -> list[tuple[str, ModelSpec]]:
    """Every public name: the registry's, then the adapters loaded at run time."""
    runtime = services().adapters.stored.all()
    return sorted(services().jobs.names.items()) + sorted((s.name, s) for s in runtime)


def _live_names() -> list[tuple[str, ModelSpec]]:
    known = _known()
    try:
        live = services().jobs.liveness.workers_by_model(cached=False)
    except redis.RedisError as exc:
        raise queue_unavailable(exc) from exc
    return [(name, spec) for name, spec in known if live.get(spec.name)]


@bp.get("/models")
def list_models() -> Response:
    return jsonify({"object": "list", "data": [model_card(n, s) for n, s in _live_names()]})


@bp.get("/models/<path:model>")
def retrieve_model(model: str) -> Response:
    for name, spec in _live_names():
        if name == model:
            return jsonify(model_card(name, spec))
    if any(name == model for name, _ in _known()):
        raise APIError(
            503,
            f"No worker is serving the model `{model}` right now.",
            "model",
            "model_not_available",
            "service_unavailable_error",
        )
    raise APIError(404, f"The model `{model}` does not exist.", "model", "model_not_found")
