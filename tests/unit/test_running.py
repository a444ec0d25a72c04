"""Decode groups (workers.engine.running), with the tiny model in fp32: a long prompt that joins
short streams decodes in a group of its own, with the same greedy output as alone, and the
groups merge again once one batch costs less."""

import pytest

from tests.unit.test_engine import job, run_until_done
from tests.unit.test_prefix import SYSTEM, make, model_and_tokenizer  # noqa: F401 - fixtures
from workers.engine.running import MAX_GROUPS, pass_cost


def outputs_alone(make, jobs):  # noqa: F811
    solo = make(prefix_cache_bytes=0)
    for job_id, prompt, tokens in jobs:
        run_until_done(solo, [solo.submit(job(job_id, prompt, max_tokens=tokens, ignore_eos=True))])
    return {job_id: solo.io.text(job_id) for job_id, _, _ in jobs}


def test_a_forward_pass_costs_its_weights_over_a_tokens_cache(model_and_tokenizer):  # noqa: F811
    model = model_and_tokenizer[0]
    config = model.config
    weights = sum(p.numel() for p in model.parameters()) * 4
    head_dim = config.hidden_size // config.num_attention_heads
    per_token = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 4
    assert pass_cost(model) == pytest.approx(weights / per_token)


def test_a_long_prompt_decodes_in_a_group_of_its_own_and_answers_as_alone(make):  # noqa: F811
    jobs = [("s0", "Hello", 40), ("s1", "Hi there", 40), ("long", SYSTEM * 3, 8)]
    alone = outputs_alone(make, jobs)
    engine = make(prefix_cache_bytes=0)
    engine._running.fixed = 100  # row-columns: what the tiny model's weights would cost if big
    tickets = [engine.submit(job(i, p, max_tokens=n, ignore_eos=True)) for i, p, n in jobs[:2]]
    engine.step()
    assert len(engine._running.groups) == 1
    long_prompt = jobs[2]
    tickets.append(engine.submit(job(long_prompt[0], long_prompt[1], max_tokens=8)))
    sizes = []
    while not tickets[2].finished:
        engine.step()
        sizes.append([len(group.rows) for group in engine._running.groups])
    assert [2, 1] in sizes  # the long one ran beside the short ones, not padded into them
    assert sizes[-1] == [2]  # and its group went with it
    run_until_done(engine, tickets)
    for job_id in alone:
        assert engine.io.text(job_id) == alone[job_id]


def test_groups_merge_once_one_batch_costs_less(make):  # noqa: F811
    engine = make(prefix_cache_bytes=0)
    engine._running.fixed = 100
    first = engine.submit(job("first", "Hello", max_tokens=30, ignore_eos=True))
    engine.step()
    second = engine.submit(job("second", SYSTEM * 2, max_tokens=30, ignore_eos=True))
    while len(engine._running.rows) < 2:
        engine.step()
    assert len(engine._running.groups) == 2
    engine._running.fixed = 10**6  # a pass now costs more than any padding: one batch is cheaper
    engine.step()
    assert [len(group.rows) for group in engine._running.groups] == [2]
    run_until_done(engine, [first, second])
    alone = outputs_alone(make, [("first", "Hello", 30), ("second", SYSTEM * 2, 30)])
    assert engine.io.text("first") == alone["first"]
    assert engine.io.text("second") == alone["second"]


def test_never_more_groups_than_the_limit(make):  # noqa: F811
    engine = make(prefix_cache_bytes=0)
    engine.max_batch_size = engine._scheduler.max_batch_size = 8
    engine._running.fixed = 0  # any padding costs more than a pass: every join would be apart
    prompts = [("Hi " * (1 + 8 * i)).strip() for i in range(MAX_GROUPS + 2)]
    tickets = []
    for i, prompt in enumerate(prompts):
        tickets.append(engine.submit(job(f"r{i}", prompt, max_tokens=200, ignore_eos=True)))
        while len(engine._running.rows) <= i:  # a prompt may take a few chunks
            engine.step()
    assert len(engine._running.rows) == len(prompts)
    assert len(engine._running.groups) == MAX_GROUPS
    engine._cancel({f"r{i}" for i in range(len(prompts))})  # no need to run them out
    run_until_done(engine, tickets)


def test_the_prefill_budget_follows_what_its_passes_cost():
    from workers.engine.prefill import LEAST, RATIO, PrefillBudget

    budget = PrefillBudget(most=512)
    assert budget.tokens(streams_running=False) == 512
    budget.decoded(0.05)
    target = RATIO * 0.05

    def cost(tokens, context):  # seconds: a fixed part, and a part per token that grows
        return 0.02 + tokens * (0.001 + context * 1e-6)

    context = 0
    for _ in range(30):  # a long prompt's chunks, each attending to more context
        tokens = budget.tokens(streams_running=True)
        budget.prefilled(tokens, cost(tokens, context))
        context += tokens
    tokens = budget.tokens(streams_running=True)
    assert cost(tokens, context) == pytest.approx(target, rel=0.25)  # a chunk fits its time
    budget.prefilled(tokens, 10 * target)  # a pass far over its time: the next is smaller
    assert budget.tokens(streams_running=True) < tokens
    budget.prefilled(3, 1.0)  # a small pass, however slow, never brings it under LEAST
    assert budget.tokens(streams_running=True) >= LEAST
