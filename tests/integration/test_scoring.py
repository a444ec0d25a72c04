"""Rerank and score, for real: the default embedding model answers both by cosine similarity (the
right document first), a tiny random cross-encoder by its own scores (sorted, ``top_n``), and
bad requests are 400s that name their parameter."""

import httpx
import pytest

from tests.integration.conftest import CROSS, EMBED_MODEL, TINY

QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Bananas are a yellow fruit.",
    "Paris is the capital and largest city of France.",
    "The cat sat on the mat.",
]


def post(front: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{front}/v1/{path}", json=body, timeout=60)


@pytest.mark.usefixtures("embed_worker")
def test_the_default_embedding_model_reranks_the_right_document_first(front):
    reply = post(front, "rerank", {"model": EMBED_MODEL, "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    results = body["results"]
    assert [r["index"] for r in results][0] == 1
    assert results[0]["document"] == {"text": DOCUMENTS[1]}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert body["model"] == EMBED_MODEL and body["usage"]["total_tokens"] > 0

    top = post(
        front,
        "rerank",
        {
            "model": EMBED_MODEL,
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 1,
            "return_documents": False,
        },
    ).json()["results"]
    assert top == [{"index": 1, "relevance_score": pytest.approx(scores[0], abs=1e-5)}]

    # /v1/score: the same pairs, the same scores, in the order given.
    scored = post(front, "score", {"model": EMBED_MODEL, "text_1": QUERY, "text_2": DOCUMENTS})
    assert scored.status_code == 200, scored.text
    by_index = {r["index"]: r["relevance_score"] for r in results}
    data = scored.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert [d["score"] for d in data] == pytest.approx([by_index[i] for i in range(3)], abs=1e-5)


@pytest.mark.usefixtures("cross_worker")
def test_a_cross_encoder_reranks_and_scores_pairs(front):
    documents = [{"text": d} for d in DOCUMENTS] + ["Berlin is in Germany."]
    body = {"model": CROSS, "query": QUERY, "documents": documents, "top_n": 3}
    reply = post(front, "rerank", body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 3
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)

    # Pair by pair: each text_1 with its text_2, the cross-encoder's own scores.
    pairs = {
        "model": CROSS,
        "text_1": [QUERY] * 4,
        "text_2": [d if isinstance(d, str) else d["text"] for d in documents],
    }
    scored = post(front, "score", pairs).json()
    by_index = {d["index"]: d["score"] for d in scored["data"]}
    for result in results:
        assert result["relevance_score"] == pytest.approx(by_index[result["index"]], abs=1e-6)
    assert scored["usage"]["prompt_tokens"] > 0

    models = {m["id"]: m for m in httpx.get(f"{front}/v1/models").json()["data"]}
    assert models[CROSS]["capabilities"] == ["rerank", "score"]


@pytest.mark.usefixtures("embed_worker", "tiny_worker")
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("rerank", {"model": EMBED_MODEL, "query": QUERY, "documents": []}, "documents"),
        ("rerank", {"model": EMBED_MODEL, "query": "", "documents": ["a"]}, "query"),
        ("rerank", {"model": EMBED_MODEL, "query": "q", "documents": [3]}, "documents[0]"),
        ("rerank", {"model": EMBED_MODEL, "query": "q", "documents": ["a"], "top_n": -1}, "top_n"),
        ("rerank", {"model": TINY, "query": "q", "documents": ["a"]}, "model"),
        ("score", {"model": EMBED_MODEL, "text_1": ["a", "b"], "text_2": ["c"]}, "text_1"),
        ("score", {"model": EMBED_MODEL, "text_1": "a", "text_2": []}, "text_2"),
    ],
)
def test_bad_rerank_and_score_requests_are_400s_naming_the_parameter(front, path, body, param):
    reply = post(front, path, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
