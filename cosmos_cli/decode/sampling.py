"""Sampling from logits with the reference's top-p rule, on the device, without host syncs.

Reference (``utils/sampling.py``): softmax(logits / temperature), sort descending, drop a token when the
probability mass strictly before it exceeds ``top_p``, then the exponential race ``argmax(p / E)`` with
``E ~ Exp(1)``. We keep the rule exactly; the noise comes from :mod:`cosmos_cli.decode.rng`.
Temperature 0 (or ``top_p`` <= 0) means greedy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cosmos_cli.decode import rng


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 0.7

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def top_p_keep_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Bool mask (same shape as ``probs``) of the tokens the reference's top-p filter keeps."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep_sorted = mass_before <= top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def warped_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution the sampler draws from: temperature, top-p, renormalised (float32)."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        probs = probs * top_p_keep_mask(probs, params.top_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: torch.Tensor, params: SamplingParams, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits`` (B, V); ``seed``/``position`` are (B,) int64 on the same device."""
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = warped_probs(logits, params)
    noise = rng.exponential(seed, position, logits.shape[-1])
    return (probs / noise).argmax(dim=-1)
