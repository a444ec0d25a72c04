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


def test_tracing_costs_nothing_when_off():
    """Without OTEL_TRACES_EXPORTER, neither side loads OpenTelemetry's instrumentations or
    exporters (redis-py imports OpenTelemetry's API itself), and jobs carry no trace."""
    setup = (
        "import os; os.environ.pop('OTEL_TRACES_EXPORTER', None);"
        "from app import create_app; create_app({'REDIS_URL': 'redis://127.0.0.1:1'});"
        "import workers.celery, workers.runtime; from config.protocol import chat_job;"
        "assert 'trace' not in chat_job('m', [], {})"
    )
    loaded = ("opentelemetry.instrumentation", "opentelemetry.exporter", "opentelemetry.propagate")
    assert heavy_modules_loaded(setup, loaded) == []


def test_the_engine_never_imports_flask_or_celery():
    setup = "import workers.engine, workers.engine.embedding"
    assert heavy_modules_loaded(setup, ("flask", "celery")) == []


def test_code_is_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


PACKAGES = ("app", "config", "workers", "bench", "devtools", "tests")


def project_modules() -> dict[str, Path]:
    """Every module of the project by its dotted name (a package by its ``__init__``)."""
    found = {"manage": ROOT / "manage.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which project modules each one imports, at the top or inside a function alike (an import
    put in a function to dodge a cycle is still the cycle)."""
    import ast

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in modules else known(base))
        graph[name] = {edge for edge in edges if edge and edge != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    graph = import_graph(project_modules())
    assert cycles(graph) == []
    # the check sees a cycle where there is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_code_type_checks():
    """mypy over the project (pyproject.toml's [tool.mypy]): its default checks everywhere, the
    strict ones on the message contract (config/) and the engine (workers/engine/)."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
