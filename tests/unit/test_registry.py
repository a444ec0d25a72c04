import json

import pytest

from config.registry import DEFAULT_MODELS, ModelSpec, load_registry, public_names, resolve_source
from config.settings import Settings


def test_defaults_are_the_wheel_models():
    registry = load_registry()
    assert set(registry) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert registry["smollm2-135m-instruct"].gguf_file.endswith(".gguf")


def test_default_sources_resolve_to_installed_files():
    from pathlib import Path

    for spec in DEFAULT_MODELS:
        path = Path(resolve_source(spec))
        assert path.exists()
        if spec.gguf_file:
            assert (path / spec.gguf_file).is_file()


def test_models_file_adds_and_overrides(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(
        json.dumps(
            [
                {"name": "local", "kind": "chat", "source": "/models/x", "max_batch_size": 4},
                {"name": "all-minilm-l6-v2", "kind": "embedding", "source": "/elsewhere"},
            ]
        )
    )
    registry = load_registry(str(path))
    assert registry["local"].max_batch_size == 4
    assert registry["all-minilm-l6-v2"].source == "/elsewhere"
    assert "smollm2-135m-instruct" in registry


def test_hub_ids_and_directories_pass_through_and_bad_entries_fail():
    assert resolve_source(ModelSpec("x", "chat", "org/name")) == "org/name"
    with pytest.raises(ValueError):
        ModelSpec("x", "vision", "org/name")
    with pytest.raises(FileNotFoundError):
        resolve_source(ModelSpec("x", "chat", "pkg:no_such_package_here"))


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("API_KEYS", "a, b,,")
    monkeypatch.setenv("WORKER_API_TIMEOUT", "7.5")
    monkeypatch.setenv("EMBEDDING_BATCH_SIZE", "3")
    settings = Settings.from_env()
    assert settings.api_keys == ["a", "b"]
    assert settings.worker_api_timeout == 7.5 and settings.embedding_batch_size == 3


def test_aliases_and_adapters_are_checked(tmp_path):
    path = tmp_path / "models.json"
    base = {"name": "base", "kind": "chat", "source": "/m", "aliases": ["b1", "b2"]}
    lora = {"name": "lora", "kind": "chat", "source": "/a", "base": "base"}
    path.write_text(json.dumps([base, lora]))
    registry = load_registry(str(path))
    names = public_names(registry)
    assert names["b1"] is names["b2"] is registry["base"] and names["lora"].base == "base"
    for bad in (
        [base, {**lora, "name": "b1"}],  # a name taken twice
        [base, {**lora, "base": "nowhere"}],  # an adapter without its base
        [base, lora, {**lora, "name": "lora2", "base": "lora"}],  # an adapter on an adapter
        [{**base, "dtype": "float8"}],
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_registry(str(path))


def test_device_and_dtype_settings(monkeypatch):
    import torch

    from workers.loading import pick_device, pick_dtype

    monkeypatch.setenv("DTYPE", "bfloat16")
    monkeypatch.setenv("DEVICE", "cpu")
    settings = Settings.from_env()
    assert (settings.device, settings.dtype) == ("cpu", "bfloat16")
    assert pick_dtype(settings.dtype, pick_device(settings.device)) == torch.bfloat16
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DTYPE", "fp8")
    with pytest.raises(ValueError):
        Settings.from_env()


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse avx2 avx512f avx512_bf16 amx_tile", True),
        ("fpu sse avx2 amx_bf16 amx_tile amx_int8", True),
        ("fpu sse avx2 fma f16c avx512f", False),  # AVX-512 without its BF16 instructions
        ("fpu sse avx2 fma f16c", False),
    ],
)
def test_auto_picks_bfloat16_only_on_a_cpu_that_computes_it(monkeypatch, tmp_path, flags, native):
    import torch

    from workers import loading

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert loading.cpu_has_bf16(str(cpuinfo)) is native
    assert loading.cpu_has_bf16(str(tmp_path / "missing")) is False
    monkeypatch.setattr(loading, "cpu_has_bf16", lambda: native)
    expected = torch.bfloat16 if native else torch.float32
    assert loading.pick_dtype("auto", torch.device("cpu")) == expected
    assert loading.pick_dtype(None, torch.device("cpu")) == expected
    assert loading.pick_dtype("float32", torch.device("cpu")) == torch.float32


@pytest.mark.parametrize(
    "budgets", [{"extreme": 5}, {"low": -1}, {"low": "5"}, {"low": True}, ["low"]]
)
def test_reasoning_budgets_name_known_efforts_and_token_counts(budgets):
    with pytest.raises(ValueError, match="reasoning_budgets"):
        ModelSpec("t", "chat", "src", reasoning_format="think-tags", reasoning_budgets=budgets)
