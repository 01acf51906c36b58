"""Finite scalar quantisation (FSQ): the implicit codebook of the Cosmos DV8x16x16 tokenizer.

The codebook has no weights: each of ``len(levels)`` code channels takes one of ``levels[i]`` evenly
spaced values in [-1, 1], and a token index is the mixed-radix number those choices spell
(``basis = cumprod([1, *levels[:-1]])``). Real tokenizer: levels [8, 8, 8, 5, 5, 5] -> 64000 tokens.
The formulas follow ``FSQuantizer`` of NVIDIA's tokenizer (``tokenizer/quantizers.py``) exactly, so indices
computed here match the ones the AR model was trained on.

Every function is TorchScript-compatible, which lets the stand-in tokenizer
(``cosmos_cli.stages.standin_files.dv_network``) script them into its ``.jit`` files instead of keeping a
second copy. ``levels`` may be any list or tuple of ints; codes are channels-last (``[..., len(levels)]``).
"""

from __future__ import annotations

import torch


def codebook_size(levels: list[int]) -> int:
    """Number of distinct tokens: the product of the levels."""
    size = 1
    for level in levels:
        size *= level
    return size


def _basis(levels: list[int], device: torch.device) -> torch.Tensor:
    """Place value of each code channel in the mixed-radix index: ``cumprod([1, *levels[:-1]])``."""
    basis = [1]
    for level in levels[:-1]:
        basis.append(basis[-1] * level)
    return torch.tensor(basis, dtype=torch.int64, device=device)


def codes_to_indices(codes: torch.Tensor, levels: list[int]) -> torch.Tensor:
    """Map FSQ codes ``[..., len(levels)]`` (values ``k / (level // 2)``) to int64 token indices ``[...]``.

    As in the reference: ``zhat * half_width + half_width`` in float32, dot product with the basis, and a
    truncating integer cast (exact, since valid codes land on integers).
    """
    if codes.shape[-1] != len(levels):
        raise ValueError(f"codes have {codes.shape[-1]} channels, levels {levels} need {len(levels)}")
    half_width = (torch.tensor(levels, dtype=torch.int64, device=codes.device) // 2).float()
    digits = codes.float() * half_width + half_width
    return (digits * _basis(levels, codes.device).float()).sum(dim=-1).to(torch.int64)


def indices_to_codes(indices: torch.Tensor, levels: list[int]) -> torch.Tensor:
    """Inverse of :func:`codes_to_indices`: int indices ``[...]`` -> float32 codes ``[..., len(levels)]``."""
    levels_t = torch.tensor(levels, dtype=torch.int64, device=indices.device)
    digits = (indices.to(torch.int64).unsqueeze(-1) // _basis(levels, indices.device)) % levels_t
    half_width = (levels_t // 2).float()
    return (digits.float() - half_width) / half_width


def quantize(z: torch.Tensor, levels: list[int], eps: float = 1e-3) -> torch.Tensor:
    """Bound ``z [..., len(levels)]`` with tanh and round it onto the FSQ grid; returns codes in [-1, 1].

    ``FSQuantizer.bound`` + ``quantize`` of the reference: even levels are shifted by half a step so that
    they get ``level`` integer values (-4..3 for 8), odd levels are symmetric (-2..2 for 5).
    """
    levels_f = torch.tensor(levels, dtype=torch.float32, device=z.device)
    half_l = (levels_f - 1.0) * (1.0 + eps) / 2.0
    offset = torch.where(torch.remainder(levels_f, 2.0) == 0.0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    bounded = torch.tanh(z.float() + shift) * half_l - offset
    return torch.round(bounded) / torch.floor(levels_f / 2.0)


def inverse_bound(codes: torch.Tensor, levels: list[int], eps: float = 1e-3) -> torch.Tensor:
    """The pre-bound ``z`` for which the tanh bound of :func:`quantize` gives ``codes * (level // 2)``.

    Defined for codes in ``[-1, ((level - 1) // 2) / (level // 2)]``, the range :func:`quantize` outputs.
    Not part of the reference (its encoder is learned); the tiny tokenizer applies it before quantising
    so that the FSQ grid is evenly spaced in its colour values rather than squeezed by the tanh.
    """
    levels_f = torch.tensor(levels, dtype=torch.float32, device=codes.device)
    half_l = (levels_f - 1.0) * (1.0 + eps) / 2.0
    offset = torch.where(torch.remainder(levels_f, 2.0) == 0.0, 0.5, 0.0)
    shift = torch.atanh(offset / half_l)
    bounded = codes.float() * torch.floor(levels_f / 2.0)
    return torch.atanh((bounded + offset) / half_l) - shift
