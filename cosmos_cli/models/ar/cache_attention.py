"""Attention of a few new tokens over the static KV cache, reading only the valid prefix.

Decode steps (one token) and speculative windows (K tokens) attend over a cache whose valid length
lives on the GPU. A masked matmul over the whole static cache would read all ``max_seq_len`` slots and,
with one KV head group per program, use only a handful of SMs. This Triton kernel is flash-decoding:
programs over (sample, KV head, split of the key axis); each folds the query heads of its KV group into
the rows of one tile (no K/V repeat), stops at the valid length read from ``pos`` on the device (so a
captured CUDA graph stays valid as the sequence grows), and writes a partial softmax that a few torch
ops combine. Registered as a custom op so that ``torch.compile`` treats it as one opaque kernel.

On CPU (tests, tiny models) the same function falls back to :func:`grouped_attention`, which is the
reference the kernel is checked against.
"""

from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of torch; CPU-only installs fall back to plain torch.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


def grouped_attention(q, k, v, pos, scale: float) -> torch.Tensor:
    """Plain-torch reference: q (B, S, Hq, D); k, v (B, Hkv, L, D); pos (B, S) -> (B, S, Hq, D).

    Key j is visible to query (b, s) when ``j <= pos[b, s]``. The ``Hq / Hkv`` query heads of one KV
    head are folded into the query axis, so the cache is read once per KV head, never repeated.
    """
    b, s, hq, d = q.shape
    hkv, length = k.shape[1], k.shape[2]
    rep = hq // hkv
    qg = q.view(b, s, hkv, rep, d).permute(0, 2, 1, 3, 4).reshape(b, hkv, s * rep, d)
    scores = torch.matmul(qg, k.transpose(-1, -2)).float() * scale
    visible = torch.arange(length, device=q.device)[None, None, :] <= pos[:, :, None]  # (B, S, L)
    visible = visible[:, None, :, None, :].expand(b, 1, s, rep, length).reshape(b, 1, s * rep, length)
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1).to(v.dtype)
    out = torch.matmul(probs, v)
    return out.view(b, hkv, s, rep, d).permute(0, 2, 1, 3, 4).reshape(b, s, hq, d)


if triton is not None:

    @triton.jit
    def _split_kv_kernel(
        Q, K, V, POS, ACC, MAX, SUM,
        stride_qb, stride_qs, stride_qh,
        stride_kb, stride_kh, stride_kn,
        stride_vb, stride_vh, stride_vn,
        stride_pb,
        scale, n_kv_heads, n_rows, split_len,
        REP: tl.constexpr, D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_bh = tl.program_id(0)
        split = tl.program_id(1)
        n_splits = tl.num_programs(1)
        b = pid_bh // n_kv_heads
        h = pid_bh % n_kv_heads
        rows = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)  # a block of query rows (wide windows: several)
        row_ok = rows < n_rows
        s_idx = rows // REP
        head = h * REP + rows % REP
        dims = tl.arange(0, D)
        q = tl.load(
            Q + b * stride_qb + s_idx[:, None] * stride_qs + head[:, None] * stride_qh + dims[None, :],
            mask=row_ok[:, None],
            other=0.0,
        )
        qpos = tl.load(POS + b * stride_pb + s_idx, mask=row_ok, other=-1)
        kv_len = tl.max(qpos, axis=0) + 1
        start = split * split_len
        end = tl.minimum(start + split_len, kv_len)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D], tl.float32)
        k_base = K + b * stride_kb + h * stride_kh
        v_base = V + b * stride_vb + h * stride_vh
        for n0 in range(start, end, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < end
            k = tl.load(k_base + cols[:, None] * stride_kn + dims[None, :], mask=col_ok[:, None], other=0.0)
            qk = tl.dot(q, tl.trans(k)) * scale
            visible = (cols[None, :] <= qpos[:, None]) & col_ok[None, :]
            qk = tl.where(visible, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            p = tl.exp(qk - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(v_base + cols[:, None] * stride_vn + dims[None, :], mask=col_ok[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        out = (pid_bh * n_splits + split) * n_rows  # only the valid rows are written: less to combine
        tl.store(ACC + (out + rows)[:, None] * D + dims[None, :], acc, mask=row_ok[:, None])
        tl.store(MAX + out + rows, m_i, mask=row_ok)
        tl.store(SUM + out + rows, l_i, mask=row_ok)


MAX_BLOCK_M = 128
"""Query rows per program: a K-token window folds K x (query heads per KV head) rows (512 at K = 128 for the
5B model); more than 128 rows in one tile would spill the float32 accumulator, so wide windows use several."""

TUNING = {"block_n": 64, "num_warps": 4, "num_stages": 3, "max_splits": 96, "tiles_per_split": 1}
"""Kernel meta-parameters (measured on an H100 with scripts/bench_ar.py; see docs/benchmarks.md)."""


if triton is not None:

    @triton.jit
    def _combine_kernel(
        ACC, MAX, SUM, OUT,
        stride_ob, stride_os, stride_oh,
        n_kv_heads, n_rows, n_splits,
        REP: tl.constexpr, D: tl.constexpr, SPLITS: tl.constexpr,
    ):  # fmt: skip
        """Merge the per-split partial softmaxes of one query row into its output, in q's layout."""
        pid_bh = tl.program_id(0)
        row = tl.program_id(1)
        b = pid_bh // n_kv_heads
        h = pid_bh % n_kv_heads
        sp = tl.arange(0, SPLITS)
        ok = sp < n_splits
        base = (pid_bh * n_splits + sp) * n_rows + row
        m = tl.load(MAX + base, mask=ok, other=float("-inf"))
        l_sum = tl.load(SUM + base, mask=ok, other=0.0)
        top = tl.max(m, axis=0)
        w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))
        dims = tl.arange(0, D)
        acc = tl.load(ACC + base[:, None] * D + dims[None, :], mask=ok[:, None], other=0.0)
        out = tl.sum(acc * w[:, None], axis=0) / tl.sum(l_sum * w, axis=0)
        s_idx = row // REP
        head = h * REP + row % REP
        tl.store(OUT + b * stride_ob + s_idx * stride_os + head * stride_oh + dims, out.to(OUT.dtype.element_ty))


def _num_splits(batch_heads: int, length: int, block_n: int) -> int:
    """Splits of a few tiles each, so that even an early, short prefix keeps most SMs busy, capped so
    that the partial results to combine stay small next to the cache they summarise."""
    per_split = TUNING["tiles_per_split"] * block_n
    return max(1, min(1024 // max(batch_heads, 1), -(-length // per_split), TUNING["max_splits"]))


@torch.library.custom_op("cosmos::cache_attention", mutates_args=())
def cache_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q (B, S, Hq, D) over cache k, v (B, Hkv, L, D) up to ``pos`` (B, S) inclusive."""
    if not q.is_cuda or triton is None:
        return grouped_attention(q, k, v, pos, scale)
    return _triton_cache_attention(q, k, v, pos, scale)


@cache_attention.register_fake
def _(q, k, v, pos, scale):
    return torch.empty_like(q)


def _triton_cache_attention(q, k, v, pos, scale: float) -> torch.Tensor:
    """Split-K partial softmaxes, then their combine: two kernel launches, no other ops."""
    b, s, hq, d = q.shape
    hkv, length = k.shape[1], k.shape[2]
    rep = hq // hkv
    n_rows = s * rep
    block_m = max(16, min(MAX_BLOCK_M, triton.next_power_of_2(n_rows)))
    block_n = TUNING["block_n"]
    splits = _num_splits(b * hkv, length, block_n)
    split_len = triton.cdiv(triton.cdiv(length, splits), block_n) * block_n
    acc = torch.empty(b * hkv * splits * n_rows, d, device=q.device, dtype=torch.float32)
    row_max = torch.empty(b * hkv * splits * n_rows, device=q.device, dtype=torch.float32)
    row_sum = torch.empty_like(row_max)
    q = q.contiguous()
    pos = pos.to(torch.int64).contiguous()
    _split_kv_kernel[(b * hkv, splits, triton.cdiv(n_rows, block_m))](
        q, k, v, pos, acc, row_max, row_sum,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        pos.stride(0),
        scale, hkv, n_rows, split_len,
        REP=rep, D=d, BLOCK_M=block_m, BLOCK_N=block_n,
        num_warps=TUNING["num_warps"], num_stages=TUNING["num_stages"],
    )  # fmt: skip
    out = torch.empty_like(q)
    _combine_kernel[(b * hkv, n_rows)](
        acc, row_max, row_sum, out,
        out.stride(0), out.stride(1), out.stride(2),
        hkv, n_rows, splits,
        REP=rep, D=d, SPLITS=triton.next_power_of_2(splits),
    )  # fmt: skip
    return out
