"""Loading a registry entry into an engine, once per worker process."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

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
        model, tokenizer = _load_causal_lm(spec, source, device, Path(settings.model_cache_dir))
        engine = GenerationEngine(
            model, tokenizer, io, spec.max_batch_size, spec.name, spec.prefill_tokens
        )
    else:
        model = _load_sentence_model(source, device)
        engine = EmbeddingEngine(model, io, settings.embedding_batch_size, spec.name)
    log.info("model %s ready in %.1f s", spec.name, time.monotonic() - started)
    return engine


def _load_causal_lm(spec: ModelSpec, source: str, device: torch.device, cache_root: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Full precision on the CPU (no fast half-precision kernels there), bfloat16 on a GPU.
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if spec.gguf_file:
        converted = converted_gguf_dir(source, spec.gguf_file, cache_root)
        if not (converted / "config.json").exists():
            _convert_gguf(source, spec.gguf_file, converted)
        log.info("loading the converted copy of %s from %s", spec.gguf_file, converted)
        source = str(converted)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    return model.to(device).eval(), tokenizer


def converted_gguf_dir(source: str, gguf_file: str, cache_root: Path) -> Path:
    """Where the transformers copy of a GGUF file is cached: keyed by the file and the versions."""
    import transformers

    path = Path(source) / gguf_file
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{transformers.__version__}"
    return cache_root / "gguf" / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _convert_gguf(source: str, gguf_file: str, target: Path) -> None:
    """Dequantize a GGUF checkpoint once and save it as a transformers folder.

    Reading a GGUF file dequantizes every tensor (about 18 s for SmolLM2-135M on 2 CPU cores); the
    saved folder loads in about a second. The copy is written beside the target and renamed into
    place, so a concurrent or interrupted conversion never leaves a half-written cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers folder (once; later starts load the copy)", gguf_file)
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    # The weights are already plain float tensors; only the GGUF marker blocks saving them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:  # another worker finished the same conversion first
        shutil.rmtree(partial, ignore_errors=True)
    log.info("converted %s in %.1f s", gguf_file, time.monotonic() - started)


def _load_sentence_model(source: str, device: torch.device):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=str(device))
