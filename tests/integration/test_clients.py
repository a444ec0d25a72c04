"""Other clients people point at an OpenAI server: LangChain, and the legacy openai 0.28 module
calls of FastChat's page (installed apart, in .venv/legacy-openai, by ``manage.py test``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import EMBED_MODEL, TINY

pytestmark = pytest.mark.usefixtures("tiny_worker", "embed_worker")

LEGACY = Path(__file__).resolve().parents[2] / ".venv" / "legacy-openai"

LEGACY_SCRIPT = """
import json, sys
import openai

openai.api_key = "EMPTY"
openai.api_base = sys.argv[1]
model, embedder = sys.argv[2], sys.argv[3]
completion = openai.Completion.create(model=model, prompt="Once upon a time", max_tokens=5,
                                      temperature=0)
chat = openai.ChatCompletion.create(model=model, max_tokens=5, temperature=0,
                                    messages=[{"role": "user", "content": "Hello!"}])
stream = openai.ChatCompletion.create(model=model, max_tokens=5, temperature=0, stream=True,
                                      messages=[{"role": "user", "content": "Hello!"}])
streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in stream)
embedding = openai.Embedding.create(model=embedder, input="Hello world!")
models = openai.Model.list()
print(json.dumps({
    "version": openai.version.VERSION,
    "completion": completion["choices"][0]["text"],
    "completion_tokens": completion["usage"]["completion_tokens"],
    "chat": chat["choices"][0]["message"]["content"],
    "streamed": streamed,
    "embedding_length": len(embedding["data"][0]["embedding"]),
    "models": [m["id"] for m in models["data"]],
}))
"""


def test_langchain_chat_invoke_and_stream(front):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{front}/v1",
        api_key="EMPTY",
        model=TINY,
        temperature=0,
        max_tokens=6,
        max_retries=0,
    )
    message = llm.invoke("Hello! What is your name?")
    assert message.content
    assert message.usage_metadata["output_tokens"] == 6
    streamed = "".join(chunk.content for chunk in llm.stream("Hello! What is your name?"))
    assert streamed == message.content


def test_langchain_embeddings(front, openai_client):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: LangChain would otherwise tokenize with tiktoken,
    # whose vocabulary files it downloads, for OpenAI's own models only.
    embeddings = OpenAIEmbeddings(
        base_url=f"{front}/v1",
        api_key="EMPTY",
        model=EMBED_MODEL,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embeddings.embed_documents(["Hello world!", "Queues carry jobs."])
    query = embeddings.embed_query("Hello world!")
    assert len(documents) == 2 and all(len(v) == 384 for v in documents)
    assert query == pytest.approx(documents[0], abs=1e-5)
    direct = openai_client.embeddings.create(model=EMBED_MODEL, input="Hello world!")
    assert query == pytest.approx(direct.data[0].embedding, abs=1e-5)


def test_legacy_openai_028_module_calls(front, openai_client):
    if not (LEGACY / "openai").is_dir():
        pytest.skip("openai 0.28 is not installed apart; run the suite with `manage.py test`")
    env = {**os.environ, "PYTHONPATH": str(LEGACY)}
    out = subprocess.run(
        [sys.executable, "-c", LEGACY_SCRIPT, f"{front}/v1", TINY, EMBED_MODEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["version"].startswith("0.28")
    expected = openai_client.completions.create(
        model=TINY, prompt="Once upon a time", max_tokens=5, temperature=0
    )
    assert result["completion"] == expected.choices[0].text
    assert result["completion_tokens"] == 5
    assert result["chat"] and result["streamed"] == result["chat"]
    assert result["embedding_length"] == 384
    assert TINY in result["models"] and EMBED_MODEL in result["models"]
