"""GET /openapi.json, and schemathesis fuzzing the live stack through it.

The fuzzer gets the front's own document with each ``model`` enum narrowed to the models these
tests serve (the tiny chat model; for embeddings MiniLM and the tiny model): a registered model
with no live worker rightly answers 503, and SmolLM2 on a CPU is too slow to fuzz, but the run
must find no 5xx at all.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import EMBED_MODEL, TINY
from tests.integration.http import get

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_openapi_document_describes_the_api(front):
    status, _, doc = get(front, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    paths |= {"/v1/rerank", "/v1/score", "/tokenize", "/detokenize", "/v1/conversations"}
    assert paths <= set(doc["paths"])
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert set(chat["required"]) == {"model", "messages"}
    assert chat["properties"]["temperature"]["maximum"] == 2  # from the marshmallow validator
    assert TINY in chat["properties"]["model"]["enum"]
    embedding = doc["components"]["schemas"]["EmbeddingRequest"]
    assert {EMBED_MODEL, TINY} <= set(embedding["properties"]["model"]["enum"])  # chat ones too
    assert EMBED_MODEL not in chat["properties"]["model"]["enum"]
    stream = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/json", "text/event-stream"}


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_response_off_its_schema(
    front, tiny_worker, embed_worker, tmp_path
):
    doc = get(front, "/openapi.json")[2]
    for name, models in (
        ("ChatCompletionRequest", [TINY]),
        ("CompletionRequest", [TINY]),
        ("EditRequest", [TINY]),
        ("ResponseRequest", [TINY]),
        ("EmbeddingRequest", [EMBED_MODEL, TINY]),  # a chat model embeds too
        ("RerankRequest", [EMBED_MODEL]),
        ("ScoreRequest", [EMBED_MODEL]),
        ("TokenizeRequest", [TINY, EMBED_MODEL]),
        ("DetokenizeRequest", [TINY, EMBED_MODEL]),
    ):
        doc["components"]["schemas"][name]["properties"]["model"]["enum"] = models
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(doc))
    # schemathesis' CLI, with room for deep recursion, and without hypothesis reading lambdas'
    # source to describe its strategies (which only names them in reprs): on Python 3.11.7 a
    # RecursionError inside the ast module leaves its depth counter off, and later parses fail
    # with "AST constructor recursion depth mismatch" (CPython gh-106905, fixed in 3.11.8).
    launcher = (
        "import sys; sys.setrecursionlimit(20000); "
        "import hypothesis.internal.lambda_sources as sources; "
        "sources.lambda_description = lambda f: 'lambda'; "
        "from schemathesis.cli import schemathesis; "
        "sys.argv[0] = 'st'; sys.exit(schemathesis())"
    )
    command = [
        sys.executable,
        "-c",
        launcher,
        "run",
        str(schema),
        "--url",
        front,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "2",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # cwd: schemathesis keeps a cache (.schemathesis/) in its working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=580, cwd=tmp_path)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
