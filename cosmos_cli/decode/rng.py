"""Counter-based random numbers: the same (seed, position, token) always gives the same number.

Sampling draws its noise from a hash of ``(seed, position, vocabulary index)`` instead of a stateful
generator. That keeps the whole decode step a pure function of GPU tensors, so it can be captured in a
CUDA graph with no host sync and no generator bookkeeping, and it makes every sample's tokens
independent of what else shares its batch: the same seed gives the same video alone or in a batch, on
CPU or GPU (up to the logits' own rounding). The hash is a 32-bit integer mixer (the "lowbias32"
construction with multipliers kept below 2**31 so int64 arithmetic never overflows).
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x46CA68B5) & _MASK32
    x = x ^ (x >> 16)
    return x


def uniform(seed: torch.Tensor, position: torch.Tensor, size: int, stream: int = 0) -> torch.Tensor:
    """Uniform numbers in (0, 1), float32, shape ``(*seed.shape, size)``.

    ``seed`` and ``position`` are int64 tensors of the same shape (one per sample); ``stream`` separates
    independent uses at the same position (e.g. draft proposals vs. acceptance tests).
    """
    base = _mix(_mix(seed.long() * 0x2545F491 + stream) ^ (position.long() & _MASK32))
    idx = torch.arange(size, device=seed.device, dtype=torch.long)
    h = _mix(base[..., None] ^ _mix(idx + 0x9E3779B))
    h = _mix(h + (base[..., None] >> 7))
    return ((h >> 8).float() + 0.5) * (1.0 / 16777216.0)


def exponential(seed: torch.Tensor, position: torch.Tensor, size: int, stream: int = 0) -> torch.Tensor:
    """Exp(1) noise for the exponential-race (Gumbel-max equivalent) categorical sample."""
    return -torch.log(uniform(seed, position, size, stream))
