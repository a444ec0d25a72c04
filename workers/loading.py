"""Loading a registry entry into an engine, once per worker process."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from config.registry import CHAT, RERANK, ModelSpec, resolve_source
from config.settings import Settings
from workers.engine import GenerationEngine, JobIO
from workers.engine.attention import use_few_query_attention
from workers.engine.embedding import EmbeddingEngine
from workers.engine.lora import adapter_name, attach, read_adapter
from workers.engine.scoring import ScoringEngine
from workers.int4 import describe as describe_int4
from workers.int4 import int4_layers, pack_int4

log = logging.getLogger(__name__)
T = TypeVar("T")

# oneDNN keeps every matrix-product kernel it builds, one per shape, up to 1,024 of them. The
# decode attention's products change shape every step (one more cached token), so a worker's
# cache filled with kernels used for one step only: 360 MB more resident memory after a serving
# benchmark. A step needs a few dozen shapes (its layers share them); 64 keeps those. Set here,
# before any model runs a product (oneDNN reads it once); the environment may set another value.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


def pick_device(setting: str = "auto") -> torch.device:
    """``auto``: the first visible GPU if there is one (pin a worker to a GPU with
    CUDA_VISIBLE_DEVICES), else the CPU; or a torch device name (``cpu``, ``cuda:1``)."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def pick_dtype(setting: str | None, device: torch.device) -> torch.dtype:
    """``auto`` (or None): on the CPU, bfloat16 where it computes bfloat16 natively (AMX or
    AVX-512 BF16: a decode step at batch 32 1.7x faster, a prefill 3.2x, than float32 on such a
    CPU), float32 elsewhere (bfloat16 without those units is emulated, and slower); on a GPU,
    bfloat16 where it has it, else float16. Or the named dtype."""
    if setting in (None, "auto"):
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, setting)


BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the CPU flags of native bfloat16 arithmetic


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively, from the flags its kernel reports (read, not
    guessed from the model name); False where they cannot be read."""
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                if line.startswith("flags"):
                    return any(flag in BF16_FLAGS for flag in line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


def load_engines(
    specs: list[ModelSpec], registry: dict[str, ModelSpec], io: JobIO, settings: Settings
) -> dict[str, GenerationEngine | EmbeddingEngine]:
    """Load the engines that serve ``specs``: model name -> its engine (not started).

    Each model gets its own engine, except LoRA adapters: the adapters of one base (and the base,
    if asked for too) share one engine over one copy of the base weights.
    """
    return in_passing_thread(_load_engines, specs, registry, io, settings)


def in_passing_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``, run on a thread of its own that ends when it returns.

    Why: torch's CPU kernels run on OpenMP, whose thread pools belong to the threads that start
    parallel work. While two such threads live (the loader, the engine's loop), GNU OpenMP finds
    more of its threads than CPUs and stops its workers spinning between kernels: every one of
    the step's hundreds of small kernels then waits for a sleeping thread to wake, and a decode
    step of SmolLM2 took 29 ms instead of 18. Loading on a thread that ends leaves the engine's
    loop the only one (with one engine per worker, as the README advises).
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="loading")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _load_engines(
    specs: list[ModelSpec], registry: dict[str, ModelSpec], io: JobIO, settings: Settings
) -> dict[str, GenerationEngine | EmbeddingEngine]:
    engines: dict[str, GenerationEngine | EmbeddingEngine] = {}
    groups: dict[str, list[ModelSpec]] = {}
    for spec in specs:
        if spec.base is not None:
            groups.setdefault(spec.base, []).append(spec)
        elif spec.name not in groups:
            engines[spec.name] = _load_engine(spec, io, settings)
    for base_name, adapters in groups.items():
        engine = _load_engine(registry[base_name], io, settings, adapters)
        for spec in adapters:
            engines[spec.name] = engine
        if any(spec.name == base_name for spec in specs):
            engines[base_name] = engine
    return engines


def load_engine(
    spec: ModelSpec, io: JobIO, settings: Settings, adapters: Sequence[ModelSpec] = ()
) -> GenerationEngine | EmbeddingEngine:
    """Load ``spec``'s weights (with ``adapters`` on them) and wrap them in the engine of its
    kind (not started), on a passing thread (see :func:`in_passing_thread`)."""
    return in_passing_thread(_load_engine, spec, io, settings, adapters)


def _load_engine(
    spec: ModelSpec, io: JobIO, settings: Settings, adapters: Sequence[ModelSpec] = ()
) -> GenerationEngine | EmbeddingEngine:
    device = pick_device(settings.device)
    dtype = pick_dtype(spec.dtype or settings.dtype, device)
    source = resolve_source(spec)
    log.info(
        "loading model %s (%s) from %s on %s as %s", spec.name, spec.kind, source, device, dtype
    )
    started = time.monotonic()
    engine: GenerationEngine | EmbeddingEngine
    if spec.kind == CHAT:
        model, tokenizer = _load_causal_lm(
            spec, source, device, dtype, Path(settings.model_cache_dir), settings.int4_weights
        )
        names = {}
        if adapters:
            model, names = _add_adapters(model, adapters)
        engine = GenerationEngine(
            model,
            tokenizer,
            io,
            spec.max_batch_size,
            spec.name,
            spec.prefill_tokens,
            names,
            embedding_batch_size=settings.embedding_batch_size,
            tool_format=spec.tool_format,
            tool_prompt=spec.tool_prompt,
            reasoning_format=spec.reasoning_format,
            bulk_share=settings.bulk_share,
            prefix_cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
            lookup_tokens=settings.prompt_lookup_tokens,
        )
    elif spec.kind == RERANK:
        model = _load_cross_encoder(source, device, dtype)
        engine = ScoringEngine(model, io, settings.embedding_batch_size, spec.name)
    else:
        model = _load_sentence_model(source, device, dtype)
        engine = EmbeddingEngine(model, io, settings.embedding_batch_size, spec.name)
    engine.info = {"device": str(device), "dtype": str(dtype).removeprefix("torch.")}
    if spec.kind == CHAT:
        engine.info["int4_layers"] = int4_layers(model)
    log.info("model %s ready in %.1f s", spec.name, time.monotonic() - started)
    return engine


def _add_adapters(model: Any, adapters: Sequence[ModelSpec]) -> Any:
    """Wrap ``model`` in a PEFT model holding every adapter (one copy of the base weights);
    return it and the adapter name of each model name."""
    names = {}
    for spec in adapters:
        source = resolve_source(spec)
        log.info("loading LoRA adapter %s from %s", spec.name, source)
        names[spec.name] = name = adapter_name()
        model = attach(model, name, read_adapter(source))
    return model, names


def _load_causal_lm(
    spec: ModelSpec,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    cache_root: Path,
    int4_weights: bool = True,
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.gguf_file:
        converted = converted_gguf_dir(source, spec.gguf_file, cache_root)
        if not (converted / "config.json").exists():
            _convert_gguf(source, spec.gguf_file, converted)
        log.info("loading the converted copy of %s from %s", spec.gguf_file, converted)
        source = str(converted)
    remote = {"trust_remote_code": True} if spec.trust_remote_code else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **remote)
    # A GGUF's 4-bit weights, run in bfloat16 on the CPU, keep a 4-bit copy (found on the
    # float32 weights, before bfloat16 rounds them off their grid; see workers/int4.py).
    int4 = int4_weights and spec.gguf_file and dtype == torch.bfloat16 and device.type == "cpu"
    load_as = torch.float32 if int4 else dtype
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=load_as, **remote)
    if int4:
        pack_int4(model)
        model = model.to(dtype)
        log.info("model %s: %s", spec.name, describe_int4(model))
    model = model.to(device).eval()
    if use_few_query_attention(model):
        log.info("model %s: decode steps attend with two matrix products", spec.name)
    return model, tokenizer


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
    model: Any = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=gguf_file, dtype=torch.float32
    )
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


def _load_cross_encoder(source: str, device: torch.device, dtype: torch.dtype):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(source, device=str(device), model_kwargs={"dtype": dtype})


def _load_sentence_model(source: str, device: torch.device, dtype: torch.dtype):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=str(device), model_kwargs={"dtype": dtype})
