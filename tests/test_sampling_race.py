"""The exponential-race op: a compiled decode step sees one opaque call that samples what the reference samples."""

from __future__ import annotations

import torch

from cosmos_cli.decode import race, rng
from cosmos_cli.decode.race import exponential_race
from cosmos_cli.decode.sampling import SamplingParams, sample


def test_the_race_op_compiles_to_the_reference_tokens():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(3, 700) * 3, -1)
    probs[1, 300:] = 0.0  # a top-p tail
    seed = torch.tensor([5, -(2**40), 2**33])
    position = torch.tensor(9).expand(3)  # as the generator passes it: one position, expanded

    expected = (probs / rng.exponential(seed, position, 700)).argmax(-1)
    compiled = torch.compile(lambda p, s, q: exponential_race(p, s, q), fullgraph=True)
    assert torch.equal(compiled(probs, seed, position), expected)
    assert torch.equal(
        exponential_race(probs, seed, position, 1), (probs / rng.exponential(seed, position, 700, 1)).argmax(-1)
    )
    assert not torch.equal(expected, exponential_race(probs, seed + 1, position))  # the noise depends on the seed


def test_sample_draws_from_the_top_p_nucleus_only():
    logits = torch.tensor([[4.0, 3.5, 0.0, -1.0, -2.0]]).expand(400, 5)
    seeds = torch.arange(400)
    tokens = sample(logits, SamplingParams(1.0, 0.7), seeds, torch.zeros(400, dtype=torch.long))
    assert set(tokens.tolist()) == {0, 1}  # mass before token 2 is 0.98 > 0.7: never drawn


def test_sample_draws_the_same_tokens_through_either_race(monkeypatch):
    torch.manual_seed(1)
    logits = torch.randn(6, 900) * 2
    params = SamplingParams(1.0, 0.9)
    seeds, position = torch.arange(6) * 7919, torch.tensor(40).expand(6)
    assert not race.KERNEL_ENABLED  # the kernel is measured on a GPU before sampling takes it by default
    through_reference = sample(logits, params, seeds, position)
    monkeypatch.setattr(race, "KERNEL_ENABLED", True)
    assert torch.equal(sample(logits, params, seeds, position), through_reference)
    assert len(set(through_reference.tolist())) > 1  # a real draw, not one token for every seed
