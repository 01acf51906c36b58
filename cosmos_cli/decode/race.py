"""The exponential race ``argmax(p / E)``, ``E ~ Exp(1)`` from :mod:`cosmos_cli.decode.rng`, as one GPU pass.

Drawing a token by the race touches every vocabulary entry once: hash ``(seed, position, index)`` into a
uniform, take ``-log``, divide, arg-max. Compiled by inductor as one reduction over a single row of 64000
(batch-1 decode), that is one program doing 64-bit integer arithmetic for the whole vocabulary: 41 us of a
3.9 ms step on an H100, more than the top-p sort. This Triton kernel spreads the row over many programs,
hashes in 32-bit unsigned arithmetic (the reference's int64 products masked to 32 bits are exactly these),
and divides with IEEE rounding, so each ``p / E`` is the value the torch reference computes on the same
device; a second tiny kernel picks the first index of the maximum, as ``torch.argmax`` does.

Registered as a custom op (one opaque call for ``torch.compile``); outside CUDA it is the torch reference.
Checked against the reference only in Triton's interpreter so far, so :func:`cosmos_cli.decode.sampling.sample`
uses it only when :data:`KERNEL_ENABLED` is set (``scripts/bench_ar.py --race-kernel``,
``scripts/profile_decode.py --sections race`` measure it on a GPU).
"""

from __future__ import annotations

import torch

from cosmos_cli.decode import rng

try:  # Triton ships with CUDA builds of torch; CPU-only installs use the torch reference.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

KERNEL_ENABLED = False
"""Whether sampling takes this kernel. Off until a GPU run shows it draws the reference's tokens and is faster
than the race inductor fuses into the compiled step (41 us per step on an H100)."""

BLOCK = 1024
"""Vocabulary entries per program of the first pass (63 programs per row at 64000)."""


def reference_race(probs: torch.Tensor, seed: torch.Tensor, position: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """``argmax(probs / E)`` per row of ``probs`` (B, V), with ``E = rng.exponential(seed, position, V, stream)``."""
    return (probs / rng.exponential(seed, position, probs.shape[-1], stream)).argmax(dim=-1)


if triton is not None:

    @triton.jit
    def _mix32(x):
        x = x ^ (x >> 16)
        x = x * 0x7FEB352D
        x = x ^ (x >> 15)
        x = x * 0x46CA68B5
        return x ^ (x >> 16)

    @triton.jit
    def _race_partial_kernel(P, SEED, POS, VAL, IDX, V, stride_p, stride_seed, stride_pos, n_blocks,
                             STREAM: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        row = tl.program_id(0)
        blk = tl.program_id(1)
        seed = (tl.load(SEED + row * stride_seed) & 0xFFFFFFFF).to(tl.uint32)
        pos = (tl.load(POS + row * stride_pos) & 0xFFFFFFFF).to(tl.uint32)
        base = _mix32(_mix32(seed * 0x2545F491 + STREAM) ^ pos)
        idx = blk * BLOCK + tl.arange(0, BLOCK)
        ok = idx < V
        h = _mix32(base ^ _mix32(idx.to(tl.uint32) + 0x9E3779B))
        h = _mix32(h + (base >> 7))
        u = ((h >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
        p = tl.load(P + row * stride_p + idx, mask=ok, other=0.0)
        score = tl.where(ok, tl.div_rn(p, -tl.log(u)), -1.0)
        best, where = tl.max(score, axis=0, return_indices=True, return_indices_tie_break_left=True)
        tl.store(VAL + row * n_blocks + blk, best)
        tl.store(IDX + row * n_blocks + blk, blk * BLOCK + where)

    @triton.jit
    def _race_final_kernel(VAL, IDX, OUT, n_blocks, BLOCKS: tl.constexpr):
        row = tl.program_id(0)
        b = tl.arange(0, BLOCKS)
        val = tl.load(VAL + row * n_blocks + b, mask=b < n_blocks, other=-2.0)
        _, first = tl.max(val, axis=0, return_indices=True, return_indices_tie_break_left=True)
        tl.store(OUT + row, tl.load(IDX + row * n_blocks + first).to(tl.int64))


@torch.library.custom_op("cosmos::exponential_race", mutates_args=())
def exponential_race(probs: torch.Tensor, seed: torch.Tensor, position: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """One token per row of ``probs`` (B, V) float32; ``seed``/``position`` (B,) int64 on the same device."""
    if not probs.is_cuda or triton is None or probs.dtype != torch.float32:
        return reference_race(probs, seed, position, stream)
    return _triton_race(probs, seed, position, stream)


@exponential_race.register_fake
def _(probs, seed, position, stream=0):
    return probs.new_empty(probs.shape[:-1], dtype=torch.long)


def _triton_race(probs: torch.Tensor, seed: torch.Tensor, position: torch.Tensor, stream: int) -> torch.Tensor:
    rows, vocab = probs.shape
    probs = probs if probs.stride(-1) == 1 else probs.contiguous()
    n_blocks = triton.cdiv(vocab, BLOCK)
    val = torch.empty(rows, n_blocks, device=probs.device, dtype=torch.float32)
    idx = torch.empty(rows, n_blocks, device=probs.device, dtype=torch.int32)
    seed, position = seed.to(torch.int64), position.to(torch.int64)  # no copies: an expanded position is read
    _race_partial_kernel[(rows, n_blocks)](  # by its stride
        probs, seed, position, val, idx, vocab, probs.stride(0), seed.stride(0), position.stride(0), n_blocks,
        STREAM=stream, BLOCK=BLOCK, num_warps=4,
    )  # fmt: skip
    out = torch.empty(rows, device=probs.device, dtype=torch.long)
    _race_final_kernel[(rows,)](val, idx, out, n_blocks, BLOCKS=triton.next_power_of_2(n_blocks))
    return out
