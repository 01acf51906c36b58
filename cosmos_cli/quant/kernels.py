"""Triton kernel for the decode-time linears: ``y = (x @ w.T) * scale`` with a few rows of ``x``.

A decode step (B tokens) or a speculative window (B x K tokens) multiplies a handful of activation rows by
every weight matrix once, so it is bound by the bytes of the weights. One kernel serves three weight
formats: bf16 (no scale), int8 and fp8 e4m3 with one float32 scale per output channel. The weight tile is
loaded in its stored format, converted to bf16 in registers (exact for int8 and e4m3) and fed to
``tl.dot``; the per-channel scale multiplies the float32 accumulator once at the end. Weight bytes read
per step: 1 per parameter for int8/fp8 instead of 2.

Shapes with few output rows (the 4096-row matrices) need more programs than output tiles to keep every
SM streaming, so the K axis can be split; the float32 partials are then summed, scaled and cast by a
second small kernel (never atomics: the sum order, and so the output, is the same on every run).

One activation row (batch-1 decode, the case that sets the video's latency) has a second kernel: no
tensor-core tile padded from 1 to 16 rows, but a plain multiply-accumulate of each weight tile into a
float32 register tile that is reduced once at the end, with the weights streamed past L2
(``evict_first``). It keeps more bytes in flight per SM for the same registers. Its int8 weights become
float32 without the int-to-float instruction (a quarter-rate conversion on Hopper): the sign-extended byte
added to the bits of 1.5 * 2^23 is the float 1.5 * 2^23 + w, exactly, and one subtraction leaves w. Same
values, fewer issue slots: on an H100 the int8 decode step went from 2.615 to 2.533 ms (docs/benchmarks.md).

The kernel, block sizes and split are chosen per (rows bucket, N, K, weight format) by timing a short
candidate list on the first call (L2 flushed between runs by ``triton.testing.do_bench``), never
during CUDA-graph capture (the generators warm up before capturing). Registered as a custom op so that
``torch.compile`` treats it as one opaque call.

Outside CUDA (tests, tiny models on CPU) :func:`reference_linear` computes the same function in torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # Triton ships with CUDA builds of torch; CPU-only installs use the torch reference.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

MAX_KERNEL_ROWS = 128
"""Activation rows (tokens) up to which the kernel is used; prefill (thousands) dequantizes and calls cuBLAS."""


def reference_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``(x @ weight.T) * scale`` in ``x``'s dtype: the stored weight cast exactly to ``x.dtype``, one matmul,
    then the per-output-channel scale (None for unquantized weights)."""
    out = F.linear(x, weight.to(x.dtype))
    return out if scale is None else out * scale.to(x.dtype)


if triton is not None:

    @triton.jit(do_not_specialize=["M"])
    def _wq_mm_kernel(
        X, W, S, Y, P,
        M, N, K, stride_xm, stride_wn, stride_ym, k_per_split,
        HAS_SCALE: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr, K_ITERS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_k = tl.program_id(2)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_ok = rm < M
        n_ok = rn < N
        rn_safe = tl.where(n_ok, rn, 0)  # out-of-range rows re-read row 0: no mask on the weight stream
        rm_safe = tl.where(m_ok, rm, 0)
        k_start = pid_k * k_per_split
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in range(0, K_ITERS):
            rk = k_start + i * BLOCK_K + tl.arange(0, BLOCK_K)
            if EVEN_K:
                x = tl.load(X + rm_safe[:, None] * stride_xm + rk[None, :])
                w = tl.load(W + rn_safe[:, None] * stride_wn + rk[None, :])
            else:
                k_ok = rk < K
                x = tl.load(X + rm_safe[:, None] * stride_xm + rk[None, :], mask=k_ok[None, :], other=0.0)
                w = tl.load(W + rn_safe[:, None] * stride_wn + rk[None, :], mask=k_ok[None, :], other=0.0)
            acc += tl.dot(x, tl.trans(w.to(x.dtype)))
        if SPLIT_K == 1:
            if HAS_SCALE:
                acc = acc * tl.load(S + rn_safe)[None, :]
            tl.store(Y + rm[:, None] * stride_ym + rn[None, :], acc.to(Y.dtype.element_ty),
                     mask=m_ok[:, None] & n_ok[None, :])  # fmt: skip
        else:
            tl.store(P + pid_k * M * N + rm[:, None] * N + rn[None, :], acc, mask=m_ok[:, None] & n_ok[None, :])

    @triton.jit
    def _gemv_kernel(
        X, W, S, Y, P, N, K, stride_wn, k_per_split, k_iters,
        HAS_SCALE: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, INT8_BITS: tl.constexpr,
    ):  # fmt: skip
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = rn < N
        rn_safe = tl.where(n_ok, rn, 0).to(tl.int64)  # out-of-range rows re-read row 0: no mask on the stream
        k_start = pid_k * k_per_split
        rk = k_start + tl.arange(0, BLOCK_K)
        w_ptrs = W + rn_safe[:, None] * stride_wn + rk[None, :]
        x_ptrs = X + rk
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for i in range(0, k_iters):
            if EVEN_K:
                w = tl.load(w_ptrs, eviction_policy="evict_first")
                x = tl.load(x_ptrs)
            else:
                k_ok = (rk + i * BLOCK_K) < K
                w = tl.load(w_ptrs, mask=k_ok[None, :], other=0.0, eviction_policy="evict_first")
                x = tl.load(x_ptrs, mask=k_ok, other=0.0)
            if INT8_BITS:  # int8 -> float32 exactly, by exponent arithmetic (see the module docstring)
                wf = (w.to(tl.int32) + 0x4B400000).to(tl.float32, bitcast=True) - 12582912.0
            else:
                wf = w.to(tl.float32)
            acc += wf * x.to(tl.float32)[None, :]
            w_ptrs += BLOCK_K
            x_ptrs += BLOCK_K
        out = tl.sum(acc, axis=1)
        if SPLIT_K == 1:
            if HAS_SCALE:
                out = out * tl.load(S + rn_safe)
            tl.store(Y + rn, out.to(Y.dtype.element_ty), mask=n_ok)
        else:
            tl.store(P + pid_k * N + rn, out, mask=n_ok)

    @triton.jit
    def _splitk_reduce_kernel(P, S, Y, total, N, stride_ym, HAS_SCALE: tl.constexpr, SPLIT_K: tl.constexpr,
                              BLOCK: tl.constexpr):  # fmt: skip
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = idx < total
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for s in tl.static_range(SPLIT_K):
            acc += tl.load(P + s * total + idx, mask=ok, other=0.0)
        n = idx % N
        if HAS_SCALE:
            acc = acc * tl.load(S + n, mask=ok, other=0.0)
        tl.store(Y + (idx // N) * stride_ym + n, acc.to(Y.dtype.element_ty), mask=ok)


# (kernel, BLOCK_N, BLOCK_K, SPLIT_K, num_warps, num_stages) tried for each shape; BLOCK_M follows the rows.
DOT_SMALL_M = [
    ("dot", 16, 512, 1, 4, 3), ("dot", 32, 256, 1, 4, 4), ("dot", 64, 256, 1, 4, 3), ("dot", 16, 512, 2, 4, 3),
    ("dot", 32, 256, 2, 4, 4), ("dot", 32, 256, 4, 4, 4),
]  # fmt: skip
GEMV_ONE_ROW = [
    ("gemv", 1, 1024, 1, 4, 1), ("gemv", 4, 1024, 1, 4, 1), ("gemv", 8, 1024, 1, 8, 1), ("gemv", 16, 512, 1, 8, 1),
    ("gemv", 2, 2048, 2, 4, 1), ("gemv", 8, 512, 1, 8, 1), ("gemv", 8, 1024, 1, 4, 1), ("gemv", 4, 2048, 2, 4, 1),
    ("gemv", 4, 2048, 1, 8, 1), ("gemv", 8, 2048, 2, 8, 1), ("gemv", 16, 256, 1, 4, 1), ("gemv", 4, 512, 1, 4, 1),
]  # fmt: skip
"""The top three of every (linear, format) of the 5B model in ``scripts/bench_gemv_sweep.py`` on an H100
(2026-12-07): within 1-3% of each other there; the tensor-core kernel never won at one row."""
GEMV_I2F_ONE_ROW = [
    ("gemv-i2f", 2, 2048, 2, 4, 1), ("gemv-i2f", 1, 1024, 1, 4, 1), ("gemv-i2f", 4, 2048, 1, 8, 1),
    ("gemv-i2f", 16, 256, 1, 4, 1),
]  # fmt: skip
"""int8 only: the one-row kernel with the plain int-to-float conversion. Exponent arithmetic wins where the
kernel is short of issue slots (wqkv, wo, w2: 4-7%), but on the two largest matrices (w13, the output head)
the plain conversion was 1-2% faster at its best tile (``docs/results/int8_convert_sweep_h100.json``), so the
tuner tries both; these are the plain conversion's best tiles there."""
ONE_ROW_CANDIDATES = GEMV_ONE_ROW
SMALL_M_CANDIDATES = DOT_SMALL_M
LARGE_M_CANDIDATES = [
    ("dot", 64, 128, 1, 4, 3), ("dot", 128, 64, 1, 8, 3), ("dot", 64, 128, 2, 4, 3), ("dot", 128, 64, 2, 8, 3),
    ("dot", 128, 128, 1, 8, 3), ("dot", 128, 128, 2, 8, 3), ("dot", 256, 64, 1, 8, 3), ("dot", 64, 64, 1, 4, 4),
]  # fmt: skip
"""17-128 rows (speculative verify windows). The wider weight tiles (128-256 output channels) re-read the
activation rows from L2 fewer times per weight byte: they made int8 verify passes of 96 rows 9% faster on an
H100 (11.50 against 12.59 ms at K = 96, fp8 12.0 against 13.1; ``scripts/bench_scd.py --sections verify-cost``,
2026-12-07, docs/benchmarks.md)."""
DEFAULT_ONE_ROW = ("gemv", 4, 1024, 1, 4, 1)
DEFAULT_SMALL = ("dot", 32, 256, 2, 4, 4)
DEFAULT_LARGE = ("dot", 64, 128, 1, 4, 3)

_KERNEL_DTYPES = (torch.bfloat16, torch.float16)
_TUNED: dict[tuple, tuple] = {}
"""(one row?, BLOCK_M, N, K, weight dtype, x dtype, device index) -> the fastest candidate on that device."""


def block_m_for(rows: int) -> int:
    return 16 if rows <= 16 else 32 if rows <= 32 else 64 if rows <= 64 else 128


def _launch(x, weight, scale, out, block_m: int, config: tuple) -> None:
    m, k = x.shape
    n = weight.shape[0]
    kind, block_n, block_k, split_k, warps, stages = config
    k_per_split = triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k
    split_k = triton.cdiv(k, k_per_split)
    even_k = k % block_k == 0 and k_per_split * split_k == k
    partial = out if split_k == 1 else torch.empty(split_k, m, n, device=x.device, dtype=torch.float32)
    has_scale = scale is not None
    s = scale if has_scale else out
    if kind in ("gemv", "gemv-i2f"):
        if m != 1:
            raise ValueError("the gemv kernel takes one activation row")
        _gemv_kernel[(triton.cdiv(n, block_n), split_k)](
            x, weight, s, out, partial, n, k, weight.stride(0), k_per_split, k_per_split // block_k,
            HAS_SCALE=has_scale, SPLIT_K=split_k, EVEN_K=even_k, BLOCK_N=block_n, BLOCK_K=block_k,
            INT8_BITS=weight.dtype == torch.int8 and kind == "gemv", num_warps=warps, num_stages=stages,
        )  # fmt: skip
    else:
        _wq_mm_kernel[(triton.cdiv(n, block_n), triton.cdiv(m, block_m), split_k)](
            x, weight, s, out, partial, m, n, k, x.stride(0), weight.stride(0), out.stride(0), k_per_split,
            HAS_SCALE=has_scale, SPLIT_K=split_k, EVEN_K=even_k, K_ITERS=k_per_split // block_k,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages,
        )  # fmt: skip
    if split_k > 1:
        block = 1024
        total = m * n
        _splitk_reduce_kernel[(triton.cdiv(total, block),)](
            partial, s, out, total, n, out.stride(0), HAS_SCALE=has_scale, SPLIT_K=split_k, BLOCK=block
        )


def _config_for(x, weight, scale, out, block_m: int) -> tuple:
    one_row = x.shape[0] == 1
    key = (one_row, block_m, weight.shape[0], weight.shape[1], weight.dtype, x.dtype, x.device.index)
    found = _TUNED.get(key)
    if found is not None:
        return found
    default = DEFAULT_ONE_ROW if one_row else DEFAULT_SMALL if block_m == 16 else DEFAULT_LARGE
    if torch.cuda.is_current_stream_capturing():
        return default  # never time inside a capture; warm-up normally tuned this shape already
    candidates = ONE_ROW_CANDIDATES if one_row else SMALL_M_CANDIDATES if block_m == 16 else LARGE_M_CANDIDATES
    if one_row and weight.dtype == torch.int8:
        candidates = candidates + GEMV_I2F_ONE_ROW
    best, best_ms = default, float("inf")
    for config in candidates:
        try:
            ms = triton.testing.do_bench(lambda c=config: _launch(x, weight, scale, out, block_m, c), warmup=2, rep=8)
        except Exception:  # noqa: BLE001 - a candidate that does not fit this GPU (shared memory) is skipped
            continue
        if ms < best_ms:  # candidates are few: compiling each costs more than timing it
            best, best_ms = config, ms
    _TUNED[key] = best
    return best


@torch.library.custom_op("cosmos::wq_linear", mutates_args=())
def wq_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``(x @ weight.T) * scale`` for ``x`` (..., K) in bf16/fp32 and ``weight`` (N, K) bf16/int8/fp8."""
    rows = x.numel() // x.shape[-1]
    if not x.is_cuda or triton is None or rows > MAX_KERNEL_ROWS or rows == 0 or x.dtype not in _KERNEL_DTYPES:
        return reference_linear(x, weight, scale)
    x2 = x.reshape(rows, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    result = torch.empty(*x.shape[:-1], weight.shape[0], device=x.device, dtype=x.dtype)
    out = result.view(rows, weight.shape[0])
    block_m = block_m_for(rows)
    _launch(x2, weight, scale, out, block_m, _config_for(x2, weight, scale, out, block_m))
    return result


@wq_linear.register_fake
def _(x, weight, scale):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def tuned_configs() -> dict[str, list]:
    """What the tuner chose (for benchmark reports)."""
    items = sorted(_TUNED.items(), key=str)
    return {f"m{1 if k[0] else k[1]}_n{k[2]}_k{k[3]}_{str(k[4]).removeprefix('torch.')}": list(v) for k, v in items}
