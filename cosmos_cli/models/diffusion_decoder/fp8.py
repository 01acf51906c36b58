"""fp8 (e4m3) linear layers for the diffusion decoder's DiT (``--quantization fp8``).

The DiT spends ~80% of its time in the token-stream matmuls (q/k/v/out of self-attention, q/out of
cross-attention, the two MLP layers), at 80% of the bf16 matmul rate; Hopper's fp8 matmuls run at about
twice that. Each such ``nn.Linear`` becomes an :class:`Fp8Linear`: the weight is stored once in fp8 with
one float32 scale per output row (``amax / 448``), and each call scales its input per token (row) to fp8
on the fly, so ``y = (x_q * s_x) @ (w_q * s_w)^T`` runs as one ``torch._scaled_mm`` with row-wise scales
and a bf16 result. Attention itself, the norms, AdaLN, the patch embedding and the final layer stay bf16:
they are a small share of the FLOPs and the most sensitive to rounding.

Where ``torch._scaled_mm`` is not available (the CPU, GPUs before sm89) the same quantized numbers are
multiplied after dequantization in float32 (:func:`fp8_matmul` ``emulate``), so CPU tests check the
quantization itself; only the accumulation order differs from the GPU kernel.
"""

from __future__ import annotations

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
_EPS = 1e-12


def scaled_mm_supported(device: torch.device) -> bool:
    """Hopper / Ada (sm89+) CUDA devices have fp8 tensor cores and ``torch._scaled_mm`` row-wise scales."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[..., K]`` -> (fp8 values, float32 scale ``[..., 1]``) with ``x ~= values * scale`` per row."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=_EPS) / FP8_MAX
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def fp8_matmul(
    x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, out_dtype: torch.dtype, emulate: bool
) -> torch.Tensor:
    """``x [M, K] @ dequant(weight [N, K])^T`` with ``x`` quantized per row; ``weight_scale`` is ``[1, N]``."""
    xq, xs = quantize_rows(x)
    if emulate:
        out = (xq.float() * xs) @ (weight.float() * weight_scale.t()).t()
        return out.to(out_dtype)
    # Fast accumulation (fp8 tensor-core accumulators, as TransformerEngine uses for forward GEMMs).
    return torch._scaled_mm(xq, weight.t(), scale_a=xs, scale_b=weight_scale, out_dtype=out_dtype, use_fast_accum=True)


class Fp8Linear(nn.Module):
    """A bias-free ``nn.Linear`` with its weight in fp8 (per-output-row scale) and inputs quantized per row."""

    def __init__(self, weight: torch.Tensor, emulate: bool):
        super().__init__()
        q, scale = quantize_rows(weight.detach())
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self.emulate = emulate
        self.register_buffer("weight_fp8", q.contiguous())
        self.register_buffer("weight_scale", scale.t().contiguous())  # [1, N], as _scaled_mm takes it
        self.out_dtype = weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        out = fp8_matmul(x.reshape(-1, self.in_features), self.weight_fp8, self.weight_scale, x.dtype, self.emulate)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, emulate={self.emulate}"


def _token_linears(net: nn.Module):
    """(parent, attribute / index, linear) of every matmul over the token stream inside the blocks."""
    for block in net.blocks.values():
        for sub in block.blocks:
            inner = sub.block
            if sub.block_type == "mlp":
                yield inner, "layer1", inner.layer1
                yield inner, "layer2", inner.layer2
                continue
            attn = inner.attn
            names = ("to_q", "to_k", "to_v", "to_out") if sub.block_type == "fa" else ("to_q", "to_out")
            for name in names:  # cross-attention k/v read the 512-token context: cheap, kept bf16
                seq = getattr(attn, name)
                yield seq, 0, seq[0]


def quantize_dit_(net: nn.Module, *, emulate: bool | None = None) -> int:
    """Replace the DiT's token-stream linears by :class:`Fp8Linear` in place; returns how many.

    Call after the weights are loaded and placed (the scales come from the real weights) and before
    ``compile_blocks``. ``emulate``: dequantized float32 matmul instead of ``torch._scaled_mm`` (default:
    emulate unless the weights sit on an sm89+ GPU).
    """
    count = 0
    for parent, key, linear in list(_token_linears(net)):
        if not isinstance(linear, nn.Linear) or linear.bias is not None:
            continue
        use_emulation = (not scaled_mm_supported(linear.weight.device)) if emulate is None else emulate
        k, n = linear.in_features, linear.out_features
        if not use_emulation and (k % 16 or n % 16):
            continue  # _scaled_mm needs multiples of 16
        new = Fp8Linear(linear.weight, emulate=use_emulation)
        if isinstance(key, int):
            parent[key] = new
        else:
            setattr(parent, key, new)
        count += 1
    return count
