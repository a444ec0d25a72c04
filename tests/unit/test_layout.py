"""The design's promises about the code itself."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def heavy_modules_loaded(setup: str, names: tuple[str, ...]) -> list[str]:
    """Run ``setup`` in a fresh interpreter; return which of ``names`` it imported."""
    code = f"import sys; {setup}; print(','.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_front_never_imports_torch_or_transformers():
    setup = (
        "from app import create_app; create_app({'REDIS_URL': 'redis://127.0.0.1:1'});"
        "import app.api.chat, app.api.completions, app.api.embeddings, app.api.models,"
        " app.serving.generation"
    )
    assert heavy_modules_loaded(setup, ("torch", "transformers")) == []


def test_the_engine_never_imports_flask_or_celery():
    setup = "import workers.engine, workers.engine.embedding"
    assert heavy_modules_loaded(setup, ("flask", "celery")) == []


def test_code_is_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
