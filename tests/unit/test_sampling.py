import torch

from workers.engine.sampling import SamplingParams, choose_token, choose_tokens, make_generator

LOGITS = torch.tensor([0.1, 3.0, 2.9, -1.0, 0.5])


def test_temperature_zero_and_top_k_one_are_greedy():
    assert choose_token(LOGITS, SamplingParams(temperature=0), None) == 1
    assert choose_token(LOGITS, SamplingParams(temperature=1.5, top_k=1), None) == 1


def test_top_k_keeps_only_the_k_best():
    params = SamplingParams(temperature=1.0, top_k=2)
    seen = {choose_token(LOGITS, params, make_generator(s)) for s in range(200)}
    assert seen == {1, 2}


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    params = SamplingParams(temperature=1.0, top_p=0.7)
    seen = {choose_token(logits, params, make_generator(s)) for s in range(300)}
    assert seen == {0, 1}


def test_same_seed_same_tokens_different_seed_differs():
    logits = torch.zeros(1000)
    params = SamplingParams(temperature=1.0)

    def draw(seed):
        generator = make_generator(seed)
        return [choose_token(logits, params, generator) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_params_from_job_accept_a_single_stop_string():
    params = SamplingParams.from_job({"stop": "\n", "temperature": 0.5, "top_k": -1})
    assert params.stop == ("\n",) and params.top_k == -1 and not params.greedy


def test_a_tiny_top_p_keeps_the_best_token_whatever_the_rounding():
    """Found by schemathesis: with top_p near 0, rounding in the cumulative sum once dropped
    every token, and sampling failed on a tensor of -inf."""
    torch.manual_seed(0)
    params = SamplingParams(temperature=1.0, top_p=1e-99, top_k=360)
    for _ in range(50):
        logits = torch.randn(400)
        assert choose_token(logits, params, None) == int(logits.argmax())


def test_a_vanishing_temperature_is_greedy():
    """Found by schemathesis: 1e-45 as a temperature overflowed the logits into NaN."""
    params = SamplingParams(temperature=1.4e-45)
    assert params.greedy and choose_token(LOGITS, params, None) == 1


def test_a_batch_draws_each_row_from_its_own_distribution():
    """Rows sampled together (one uniform each, see choose_tokens) keep each row's own
    distribution: the frequencies of 4,000 draws match the softmax at each row's temperature,
    a greedy row beside them stays greedy, and a token of probability 0 is never drawn."""
    torch.manual_seed(1)
    logits = torch.tensor(
        [[0.0, 1.0, 2.0, float("-inf")], [2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 2.0, 3.0]]
    )
    params = [
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=0.5),
        SamplingParams(temperature=0),
    ]
    draws = torch.tensor([choose_tokens(logits, params, [None] * 3) for _ in range(4000)])
    for row in range(2):
        expected = torch.softmax(logits[row] / params[row].temperature, dim=-1)
        seen = torch.bincount(draws[:, row], minlength=4).float() / len(draws)
        assert (seen - expected).abs().max() < 0.03, (row, seen, expected)
    assert (draws[:, 0] != 3).all()
    assert (draws[:, 2] == 3).all()


def test_a_seeded_row_draws_the_same_whatever_its_batch():
    logits = torch.randn(3, 500)
    params = [SamplingParams(temperature=1.0)] * 3

    def alone() -> list[int]:
        generator = make_generator(11)
        return [choose_tokens(logits[1:2], params[:1], [generator])[0] for _ in range(10)]

    def batched() -> list[int]:
        generator = make_generator(11)
        return [choose_tokens(logits, params, [None, generator, None])[1] for _ in range(10)]

    assert alone() == batched()
