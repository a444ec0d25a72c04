"""The design's promises about the code itself."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_front_never_imports_torch_or_transformers():
    code = (
        "import sys; from app import create_app; create_app({'REDIS_URL': 'redis://127.0.0.1:1'});"
        "import app.api.chat, app.api.completions, app.api.embeddings, app.api.models;"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_engine_never_imports_flask_or_celery():
    code = (
        "import sys, workers.engine, workers.engine.embedding;"
        "print(sorted(m for m in ('flask', 'celery') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_code_is_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
