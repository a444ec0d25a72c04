"""Embeddings from a chat model: mean-pooled last hidden states, alone, batched and in the engine
beside running generation (tiny model, in-memory JobIO)."""

import base64

import numpy as np
import pytest
import torch

from tests.unit.test_engine import MemoryIO, job, run_until_done
from workers.engine import GenerationEngine, InvalidRequest
from workers.engine.pooling import mean_pooled

TEXTS = ["Hello", "The capital of France is Paris.", "Redis publishes events; Celery workers"]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def ids(tokenizer, texts):
    return [tokenizer(t)["input_ids"] for t in texts]


def test_a_vector_is_the_unit_mean_of_the_last_hidden_states(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    tokens = ids(tokenizer, TEXTS[1:2])
    with torch.no_grad():
        hidden = model(torch.tensor(tokens), output_hidden_states=True).hidden_states[-1][0]
    expected = hidden.mean(dim=0) / hidden.mean(dim=0).norm()
    got = mean_pooled(model, tokens, tokenizer.pad_token_id)
    assert got.shape == (1, model.config.hidden_size)
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=1e-4)


def test_batching_and_padding_do_not_change_a_vector(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    tokens = ids(tokenizer, TEXTS)
    alone = torch.cat([mean_pooled(model, [t], tokenizer.pad_token_id) for t in tokens])
    together = mean_pooled(model, tokens, tokenizer.pad_token_id, batch_size=2)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone[0], alone[1])  # different texts, different vectors


def decode(vector: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(vector), dtype="<f4")


def test_the_engine_embeds_between_generation_steps_without_disturbing_them(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    solo = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=2)
    run_until_done(solo, [solo.submit(job("g", "Once upon a time", max_tokens=12))])

    engine = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=2)
    generating = engine.submit(job("g", "Once upon a time", max_tokens=12))
    engine.step()
    engine.step()
    embed = {"id": "e", "kind": "embedding", "inputs": TEXTS + [ids(tokenizer, ["Hello"])[0]]}
    embedding = engine.submit(embed)
    assert engine.load()["embedding"] == 1
    engine.step()  # this step is the embedding's: the job ends in it
    assert embedding.finished and embedding.outcome == "done" and not generating.finished
    run_until_done(engine, [generating])
    assert engine.io.text("g") == solo.io.text("g")

    (done,) = engine.io.of("e")
    vectors = [decode(v) for v in done["data"]]
    expected = mean_pooled(model, ids(tokenizer, TEXTS), tokenizer.pad_token_id).numpy()
    np.testing.assert_allclose(vectors[:3], expected, atol=1e-5)
    np.testing.assert_allclose(vectors[3], vectors[0], atol=1e-6)  # token ids: same as the text
    assert done["usage"]["prompt_tokens"] == sum(len(t) for t in ids(tokenizer, TEXTS)) + len(
        ids(tokenizer, ["Hello"])[0]
    )


def test_an_input_over_the_context_is_refused(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = GenerationEngine(model, tokenizer, MemoryIO())
    too_long = [5] * (engine.context_length + 1)
    with pytest.raises(InvalidRequest) as refused:
        engine.submit({"id": "x", "kind": "embedding", "inputs": [too_long]})
    assert (refused.value.code, refused.value.field) == ("context_length_exceeded", "inputs[0]")
