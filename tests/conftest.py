"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import pytest

from tests.tiny_model import build_tiny_adapter, build_tiny_cross_encoder, build_tiny_model


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory):
    """A private MODEL_CACHE_DIR: the suite converts the GGUF model itself, every run."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory):
    """The tiny model with a 2,048-token context: room for the tools prompt, which its small
    vocabulary spells out in about 500 tokens."""
    return build_tiny_model(tmp_path_factory.mktemp("long-model"), context=2048)


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory):
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def faulty_model_dir(tmp_path_factory):
    """The tiny model with custom code that fails, blocks or slows down on demand."""
    from tests.faulty_model import build_faulty_model

    return build_faulty_model(tmp_path_factory.mktemp("faulty-model"))


@pytest.fixture(scope="session")
def thinking_model_dir(tmp_path_factory):
    """A tiny model that thinks, then answers, by a script (its template opens ``<think>``)."""
    from tests.thinking_model import build_thinking_model

    return build_thinking_model(tmp_path_factory.mktemp("thinking-model"))


@pytest.fixture(scope="session")
def tiny_adapter_dirs(tmp_path_factory, tiny_model_dir):
    """Two random LoRA adapters on the tiny model."""
    root = tmp_path_factory.mktemp("tiny-adapters")
    return [
        build_tiny_adapter(tiny_model_dir, root / name, seed) for seed, name in ((1, "a"), (2, "b"))
    ]


@pytest.fixture
def app():
    from app import create_app

    # Port 1 answers nothing: a unit test that reached Redis would fail loudly, not hang.
    return create_app(
        {"TESTING": True, "REDIS_URL": "redis://127.0.0.1:1/0", "API_KEYS": [], "MODELS_FILE": None}
    )


@pytest.fixture
def client(app):
    return app.test_client()
