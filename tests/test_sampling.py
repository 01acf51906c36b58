"""Top-p sampling keeps the reference's rule: a token is dropped once the mass strictly before it exceeds top_p."""

from __future__ import annotations

import torch

from cosmos_cli.decode.sampling import SamplingParams, sample


def test_sample_draws_from_the_top_p_nucleus_only():
    logits = torch.tensor([[4.0, 3.5, 0.0, -1.0, -2.0]]).expand(400, 5)
    seeds = torch.arange(400)
    tokens = sample(logits, SamplingParams(1.0, 0.7), seeds, torch.zeros(400, dtype=torch.long))
    assert set(tokens.tolist()) == {0, 1}  # mass before token 2 is 0.98 > 0.7: never drawn
