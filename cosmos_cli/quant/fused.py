"""Fewer kernels per batch-1 decode step: each RMSNorm folded into the linear it feeds, SwiGLU into ``w2``.

A batch-1 decode step of the 5B model is ~360 kernels; besides the 97 weight GEMVs, about a hundred are small
elementwise and reduction kernels whose cost is mostly fixed (launch, ramp-up, tail: 2-3 us each on an H100
against a 3 ms step). Two of them per layer disappear into the GEMVs' prologues:

* RMSNorm -> linear (``attention_norm`` -> ``wqkv``, ``cross_attention_norm`` -> cross ``wq``, ``ffn_norm``
  -> ``w13``, the final ``norm`` -> ``output``): the one-row kernel multiplies the raw row by the norm's weight
  as it streams the matrix, accumulates the row's sum of squares in the same pass and scales the output
  by 1/rms once (``kernels.rmsnorm_linear``).
* ``silu(gate) * up`` -> ``w2``: the kernel reads ``[gate | up]`` and forms its input tile itself
  (``kernels.swiglu_linear``).

The modules here are drop-in replacements installed by :func:`fuse_decode_ops` after the linears are
prepared (:func:`cosmos_cli.quant.linear.prepare_linears`); the model's code is unchanged. Every call that
the one-row kernel does not take (prefill, batches, windows, CPU) runs the original two steps, so those
outputs are the same as before; the fused one-row path rounds once less (float32 from the raw row to the
output), within the bf16 noise that already separates the compiled step from the eager one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.models.ar.transformer import FeedForward, RMSNorm, Transformer
from cosmos_cli.quant.kernels import kernel_applies, rmsnorm_linear, swiglu_linear
from cosmos_cli.quant.linear import QuantLinear


def _one_row(x: torch.Tensor) -> bool:
    return kernel_applies(x, max_rows=1)


class NormedLinear(nn.Module):
    """``linear(norm(x))``; one row on the GPU in one kernel."""

    def __init__(self, norm: RMSNorm, linear: QuantLinear):
        super().__init__()
        self.norm = norm
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _one_row(x):
            return rmsnorm_linear(x, self.norm.weight, self.norm.eps, self.linear.weight, self.linear.scale)
        return self.linear(self.norm(x))


class NormedSwiGLU(nn.Module):
    """``ffn_norm`` + SwiGLU feed-forward (fused ``w13``, ``w2``); one row on the GPU in two kernels."""

    def __init__(self, norm: RMSNorm, w13: QuantLinear, w2: QuantLinear):
        super().__init__()
        self.norm = norm
        self.w13 = w13
        self.w2 = w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _one_row(x):
            gate_up = rmsnorm_linear(x, self.norm.weight, self.norm.eps, self.w13.weight, self.w13.scale)
            return swiglu_linear(gate_up, self.w2.weight, self.w2.scale)
        gate, up = self.w13(self.norm(x)).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


def fuse_decode_ops(model: Transformer) -> Transformer:
    """Fold every RMSNorm into the linear it feeds and SwiGLU into ``w2``, in place.

    Needs the fused projections (``Transformer.fuse_projections``) and prepared linears (every linear a
    :class:`QuantLinear`); anything else (tensor-parallel layers, CPU models) is left as it is. Parameter
    names change (``attention_norm.weight`` -> ``attention.wqkv.norm.weight``), so call it after loading,
    like the projection fusion.
    """
    for layer in model.layers:
        attn, ff = layer.attention, layer.feed_forward
        if isinstance(attn.wqkv, QuantLinear) and isinstance(layer.attention_norm, RMSNorm):
            attn.wqkv = NormedLinear(layer.attention_norm, attn.wqkv)
            layer.attention_norm = nn.Identity()
        cross = layer.cross_attention
        if cross is not None and isinstance(cross.wq, QuantLinear) and isinstance(layer.cross_attention_norm, RMSNorm):
            cross.wq = NormedLinear(layer.cross_attention_norm, cross.wq)
            layer.cross_attention_norm = nn.Identity()
        if type(ff) is FeedForward and isinstance(ff.w13, QuantLinear) and isinstance(ff.w2, QuantLinear):
            layer.feed_forward = NormedSwiGLU(layer.ffn_norm, ff.w13, ff.w2)
            layer.ffn_norm = nn.Identity()
    if isinstance(model.output, QuantLinear) and isinstance(model.norm, RMSNorm):
        model.output = NormedLinear(model.norm, model.output)
        model.norm = nn.Identity()
    return model
