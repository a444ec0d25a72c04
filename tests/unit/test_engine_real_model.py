"""The batched engine on the real default model (fp32, CPU) against one-at-a-time runs; and the
model as it runs by default on a CPU with bfloat16 units (bfloat16 with 4-bit weights).

Batching changes the shapes of the matrix products, so logits can differ in the last bits. A
greedy divergence is accepted only where the solo run's top two logits at that step are within
rounding of each other, and the test shows it is such a tie.
"""

import pytest
import torch

from config.registry import load_registry
from config.settings import Settings
from tests.unit.test_engine import MemoryIO, run_until_done
from workers.engine import GenerationEngine
from workers.loading import load_engine

pytestmark = pytest.mark.real_models

TIE = 1e-3  # logits are around 10-30; fp32 reordering moves them by about 1e-5

REQUESTS = [  # (id, user message, max_tokens, step at which it joins)
    ("capital", "What is the capital of France?", 24, 0),
    ("haiku", "Write a haiku about the sea.", 40, 0),
    ("colors", "Name three colors.", 12, 3),
    (
        "long",
        "Explain in a few sentences why the sky is blue, as if to a child who keeps "
        "asking why after every answer you give.",
        32,
        5,
    ),
    ("math", "What is 12 times 12?", 16, 9),
]


@pytest.fixture(scope="module")
def engine(model_cache_dir, monkeypatch_module):
    monkeypatch_module.setenv("MODEL_CACHE_DIR", str(model_cache_dir))
    monkeypatch_module.setenv("DTYPE", "float32")  # batching's rounding, not bfloat16's, is tested
    settings = Settings.from_env()
    spec = load_registry()["smollm2-135m-instruct"]
    return load_engine(spec, MemoryIO(), settings)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def chat_job(job_id, text, max_tokens):
    messages = [{"role": "user", "content": text}]
    return {
        "id": job_id,
        "messages": messages,
        "params": {"temperature": 0, "max_tokens": max_tokens},
    }


def token_ids(io, job_id):
    return [t for e in io.of(job_id) if e["type"] == "token" for t in e["token_ids"]]


def top_two_gap(engine, job, prefix):
    """Gap between the two largest logits after ``prompt + prefix``, computed alone."""
    tok = engine.tokenizer
    text = tok.apply_chat_template(job["messages"], add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"] + prefix
    with torch.inference_mode():
        logits = engine.model(torch.tensor([ids])).logits[0, -1]
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def test_mixed_batch_matches_solo_runs_except_at_ties(engine):
    model, tokenizer = engine.model, engine.tokenizer
    solo = {}
    for job_id, text, n, _ in REQUESTS:
        alone = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=1)
        run_until_done(alone, [alone.submit(chat_job(job_id, text, n))])
        solo[job_id] = token_ids(alone.io, job_id)

    batched = GenerationEngine(model, tokenizer, MemoryIO(), max_batch_size=8, prefill_tokens=64)
    tickets, step = [], 0
    pending = sorted(REQUESTS, key=lambda r: r[3])
    while pending or not all(t.finished for t in tickets):
        while pending and pending[0][3] <= step:
            job_id, text, n, _ = pending.pop(0)
            tickets.append(batched.submit(chat_job(job_id, text, n)))
        batched.step()
        step += 1

    for job_id, text, n, _ in REQUESTS:
        got, want = token_ids(batched.io, job_id), solo[job_id]
        if got == want:
            continue
        k = next(i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
        gap = top_two_gap(engine, chat_job(job_id, text, n), want[:k])
        assert gap < TIE, f"{job_id}: diverged at token {k} where the top-2 gap is {gap:.2e}"


def test_bfloat16_with_4_bit_weights_answers_as_float32_does(engine, monkeypatch):
    """bfloat16 with the GGUF's weights as 4-bit copies (the default on a CPU with bfloat16
    units): every linear layer of the model gets its copy, and greedy answers keep their facts
    (whole answers drift from float32's after a while; bench.dtype_accuracy measures how far)."""
    monkeypatch.setenv("DTYPE", "bfloat16")
    settings = Settings.from_env()
    fast = load_engine(load_registry()["smollm2-135m-instruct"], MemoryIO(), settings)
    assert fast.info == {
        "device": "cpu",
        "dtype": "bfloat16",
        "int4_layers": 211,
    }  # 210 4-bit, the 8-bit head
    assert engine.info["int4_layers"] == 0  # float32: dense weights only
    for job_id, question, fact in [
        ("capital", "What is the capital of France?", "Paris"),
        ("sky", "What color is the sky on a clear day?", "blue"),
    ]:
        for model in (engine, fast):
            run_until_done(model, [model.submit(chat_job(job_id, question, 24))])
            text = fast.tokenizer.decode(token_ids(model.io, job_id))
            assert fact in text, (model.info["dtype"], text)
    monkeypatch.setenv("INT4_WEIGHTS", "off")
    dense = load_engine(load_registry()["smollm2-135m-instruct"], MemoryIO(), Settings.from_env())
    assert dense.info["int4_layers"] == 0


CODE = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b
'''


def test_prompt_lookup_speculation_gives_the_same_greedy_reply_in_fewer_passes(engine):
    """A reply that copies its prompt (float32: no rounding apart from batching's): with
    drafts from the prompt the greedy reply is token for token the one without, and most of
    its tokens come from accepted drafts."""
    job = chat_job("copy", "Show this code again, with comments:\n\n" + CODE, 96)
    replies, passes = {}, {}
    for lookup in (0, 4):
        speculating = GenerationEngine(
            engine.model, engine.tokenizer, MemoryIO(), lookup_tokens=lookup
        )
        run_until_done(speculating, [speculating.submit(job)])
        replies[lookup] = token_ids(speculating.io, "copy")
        passes[lookup] = len(replies[lookup]) - speculating.accepted
        assert speculating.accepted <= speculating.drafted
    assert replies[4] == replies[0]
    assert "def fibonacci(n):" in engine.tokenizer.decode(replies[0])  # it copies its prompt
    assert passes[4] < 0.7 * passes[0], passes
