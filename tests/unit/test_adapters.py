"""LoRA adapters on one base in one engine: each row runs through its own adapter, and the base
weights exist once."""

import pytest
import torch

from config.registry import ModelSpec
from config.settings import Settings
from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.loading import load_engines

PROMPTS = ["Once upon a time", "The capital of France is", "Hello", "Redis publishes events"]


@pytest.fixture(scope="module")
def registry(tiny_model_dir, tiny_adapter_dirs):
    entries = [ModelSpec(name="tiny", kind="chat", source=str(tiny_model_dir), max_batch_size=8)]
    entries += [
        ModelSpec(name=f"tiny-{label}", kind="chat", source=str(path), base="tiny")
        for label, path in zip("ab", tiny_adapter_dirs, strict=True)
    ]
    return {spec.name: spec for spec in entries}


def merged_greedy(base_dir, adapter_dir, prompt, tokens):
    """The reference: the adapter merged into its own copy of the base, HF's greedy generate."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = model.eval().generate(ids, max_new_tokens=tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :])


def test_adapters_and_base_share_one_engine_and_one_copy_of_the_base(registry, tmp_path):
    settings = Settings(model_cache_dir=str(tmp_path), device="cpu")
    engines = load_engines(list(registry.values()), registry, MemoryIO(), settings)
    assert set(engines) == {"tiny", "tiny-a", "tiny-b"}
    assert engines["tiny"] is engines["tiny-a"] is engines["tiny-b"]
    model = engines["tiny"].model
    base_weights = [p for n, p in model.named_parameters() if "lora_" not in n]
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(registry["tiny"].source)
    assert len(base_weights) == len(list(plain.parameters()))  # one copy, not one per adapter
    assert len(model.peft_config) == 2


def test_a_mixed_batch_gives_each_request_its_adapters_output(
    registry, tiny_model_dir, tiny_adapter_dirs, tmp_path
):
    # float32, as the reference runs: a random tiny model's greedy choices are near-ties that
    # bfloat16 rounding (DTYPE=auto on a CPU with bf16) may flip
    settings = Settings(model_cache_dir=str(tmp_path), device="cpu", dtype="float32")
    engine = load_engines(list(registry.values()), registry, MemoryIO(), settings)["tiny"]
    adapter_of = {"tiny": None, "tiny-a": tiny_adapter_dirs[0], "tiny-b": tiny_adapter_dirs[1]}
    cases = [(f"{m}-{i}", m, p) for i, p in enumerate(PROMPTS[:2]) for m in adapter_of]
    tickets = [engine.submit({**job(i, p, max_tokens=8), "model": m}) for i, m, p in cases]
    run_until_done(engine, tickets)
    texts = {}
    for job_id, model, prompt in cases:
        texts[job_id] = engine.io.text(job_id)
        assert texts[job_id] == merged_greedy(tiny_model_dir, adapter_of[model], prompt, 8)
    # The adapters really change the output.
    assert len({texts["tiny-0"], texts["tiny-a-0"], texts["tiny-b-0"]}) == 3


def test_adapters_never_reuse_each_others_cached_prefixes(
    registry, tiny_model_dir, tiny_adapter_dirs, tmp_path
):
    settings = Settings(model_cache_dir=str(tmp_path), device="cpu", prefix_cache_mb=64)
    engine = load_engines(list(registry.values()), registry, MemoryIO(), settings)["tiny"]
    prompt = "Once upon a time there was a queue of jobs, and workers took them one by one. " * 2
    adapter_of = {"tiny-a": tiny_adapter_dirs[0], "tiny-b": tiny_adapter_dirs[1]}
    runs = [("a1", "tiny-a"), ("b1", "tiny-b"), ("a2", "tiny-a")]
    for job_id, model in runs:
        ticket = engine.submit({**job(job_id, prompt, max_tokens=6), "model": model})
        run_until_done(engine, [ticket])
        assert engine.io.text(job_id) == merged_greedy(tiny_model_dir, adapter_of[model], prompt, 6)
    cached = {
        i: engine.io.of(i)[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] for i, _ in runs
    }
    assert cached["a1"] == cached["b1"] == 0 and cached["a2"] > 0
