"""Loading a registry entry into an engine, once per worker process."""

from __future__ import annotations

import logging
import time

import torch

from config.registry import CHAT, ModelSpec, resolve_source
from config.settings import Settings
from workers.engine import GenerationEngine, JobIO
from workers.engine.embedding import EmbeddingEngine

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_engine(
    spec: ModelSpec, io: JobIO, settings: Settings
) -> GenerationEngine | EmbeddingEngine:
    """Load ``spec``'s weights and wrap them in the engine of its kind (not started)."""
    device = pick_device()
    source = resolve_source(spec)
    log.info("loading model %s (%s) from %s on %s", spec.name, spec.kind, source, device)
    started = time.monotonic()
    if spec.kind == CHAT:
        model, tokenizer = _load_causal_lm(spec, source, device)
        engine = GenerationEngine(model, tokenizer, io, spec.max_batch_size, spec.name)
    else:
        model = _load_sentence_model(source, device)
        engine = EmbeddingEngine(model, io, settings.embedding_batch_size, spec.name)
    log.info("model %s ready in %.1f s", spec.name, time.monotonic() - started)
    return engine


def _load_causal_lm(spec: ModelSpec, source: str, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    # Full precision on the CPU (no fast half-precision kernels there), bfloat16 on a GPU.
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    return model.to(device).eval(), tokenizer


def _load_sentence_model(source: str, device: torch.device):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=str(device))
