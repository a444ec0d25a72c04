import json

import pytest

from config.registry import DEFAULT_MODELS, ModelSpec, load_registry, resolve_source
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
