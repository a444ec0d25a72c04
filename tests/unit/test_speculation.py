"""Prompt-lookup speculative decoding (workers/engine/speculation.py): drafts, and acceptance
that keeps greedy output and sampled distributions as they are."""

import torch

from workers.engine.drafts import MAX_WAIT, Drafter
from workers.engine.sampling import SamplingParams, make_generator
from workers.engine.speculation import accept


def test_a_draft_is_what_followed_the_latest_occurrence_of_the_last_tokens():
    drafter = Drafter([1, 2, 3, 4, 5, 9, 2, 3, 7, 8])
    drafter.extend([1, 2, 3])  # "1 2 3" occurred at the start, "2 3" later too
    assert drafter.draft(3) == [4, 5, 9]
    drafter.extend([7])  # "2 3 7" (the latest "2 3", then 7) -> 8
    assert drafter.draft(4) == [8, 1, 2, 3]
    assert Drafter([5, 6, 7]).draft(4) == []  # nothing repeats


def test_drafts_wait_longer_after_each_failure_and_resume_after_a_success():
    drafter = Drafter([1, 2, 3, 1, 2])
    waits = []
    for _ in range(6):
        drafter.taken(0)
        waits.append(drafter.wait)
        while drafter.wait:
            assert drafter.draft(2) == []
    assert waits == [1, 2, 4, 8, MAX_WAIT, MAX_WAIT]
    assert drafter.draft(2) == [3, 1]
    drafter.taken(2)
    assert drafter.wait == 0 and drafter.draft(2) == [3, 1]


def test_greedy_acceptance_keeps_the_argmax_prefix_and_adds_the_next_argmax():
    logits = torch.full((4, 10), -5.0)
    for position, best in enumerate([3, 4, 6, 1]):
        logits[position, best] = 5.0
    params = SamplingParams(temperature=0)
    assert accept(logits, [3, 4, 5], params, None) == [3, 4, 6]  # 5 rejected, 6 instead
    assert accept(logits, [3, 4, 6], params, None) == [3, 4, 6, 1]  # all taken, and a bonus
    assert accept(logits, [9, 4, 6], params, None) == [3]


def test_sampled_acceptance_keeps_the_model_distribution():
    """Whatever the draft, the first token emitted is distributed as the model's p: accepted
    with probability p(d), else drawn from p without d."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]]))
    params = SamplingParams(temperature=1.0)
    generator = make_generator(0)
    for draft in ([1], [3]):
        first = torch.tensor([accept(logits, draft, params, generator)[0] for _ in range(6000)])
        seen = torch.bincount(first, minlength=4).float() / len(first)
        assert (seen - torch.tensor([0.5, 0.3, 0.15, 0.05])).abs().max() < 0.025, (draft, seen)
