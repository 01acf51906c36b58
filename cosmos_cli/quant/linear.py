"""Weight-only quantization of the AR model's linears (``--quantization int8|fp8``), made at load time.

Batch-1 decoding reads every weight once per token, so its floor is the weight bytes over memory bandwidth;
storing the large linears in one byte per parameter halves that floor. Each output channel (row) of a
weight ``W`` gets one float32 scale ``s = max|W_row| / qmax`` and the row is stored as ``round(W_row / s)``:

* ``int8``: symmetric, ``qmax = 127``, round to nearest;
* ``fp8``: float8 e4m3 (``qmax = 448``, torch's round-to-nearest cast), on CUDA GPUs of compute capability
  8.9 or newer.

A :class:`QuantLinear` computes ``(x @ q.T) * s``: the stored weight converted exactly to ``x``'s dtype
(both formats are exactly representable in bf16 and fp32), one matmul, the scale on the output. On CUDA a
few rows (decode steps, speculative windows) go through the fused Triton kernel (:mod:`.kernels`); many
rows (prefill) cast the weight to bf16 and call cuBLAS. On CPU the same function runs in torch, so tests
check the quantized model against NVIDIA's float32 golden logits.

Quantized: every ``nn.Linear`` of the transformer (attention q/k/v/o, cross-attention, SwiGLU, output
head). Kept: the token embedding (one row read per token) and the norms. ``bf16`` changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.errors import BadInput
from cosmos_cli.quant.kernels import MAX_KERNEL_ROWS, wq_linear

QUANTIZATIONS = ("bf16", "int8", "fp8")
"""User-facing modes; ``bf16`` = the model's own dtype, unchanged."""

KERNEL_MODES = ("bf16-triton", "bf16-gemv")
"""Benchmark-only: bf16 weights through the Triton kernels instead of cuBLAS, for every few-row call
(``bf16-triton``) or for one-row calls only (``bf16-gemv``: batch-1 decode steps; windows and batches keep
cuBLAS)."""

QMAX = {"int8": 127.0, "fp8": 448.0}
STORAGE = {"int8": torch.int8, "fp8": torch.float8_e4m3fn}


def check_quantization(mode: str, device: torch.device | str | None, *, name_only: bool = False) -> None:
    """Reject an unknown mode, or fp8 where it cannot run, with one line (before any model loads)."""
    if mode not in QUANTIZATIONS:
        raise BadInput(f"unknown --quantization {mode!r}", f"use one of {', '.join(QUANTIZATIONS)}")
    if mode != "fp8" or name_only:
        return
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        raise BadInput("--quantization fp8 needs a CUDA GPU (compute capability 8.9+)", "use --quantization int8")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise BadInput(
            f"--quantization fp8 needs compute capability 8.9 or newer; this GPU is {major}.{minor}",
            "use --quantization int8",
        )


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric quantization of ``weight`` (N, K): (stored weight, float32 scales (N,))."""
    w = weight.float()
    qmax = QMAX[mode]
    scale = (w.abs().amax(dim=1) / qmax).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = (w / scale[:, None]).clamp(-qmax, qmax)
    q = scaled.round().to(torch.int8) if mode == "int8" else scaled.to(torch.float8_e4m3fn)
    return q.contiguous(), scale.contiguous()


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight a quantized linear stands for: ``q * s`` per row, in ``dtype``."""
    return (q.float() * scale.float()[:, None]).to(dtype)


class QuantLinear(nn.Module):
    """A bias-free linear whose weight is stored quantized (or bf16 for the Triton kernel), same interface.

    ``weight`` stays a (frozen) parameter so offloading and streaming move it like any other; ``scale`` too.
    """

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None, mode: str):
        super().__init__()
        self.mode = mode
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.scale = None if scale is None else nn.Parameter(scale, requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str) -> QuantLinear:
        if linear.bias is not None:
            raise ValueError("QuantLinear has no bias; the AR model's linears have none")
        if mode in KERNEL_MODES:
            return cls(linear.weight.detach(), None, mode)
        q, scale = quantize_weight(linear.weight.detach(), mode)
        return cls(q, scale, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        kernel_rows = 1 if self.mode == "bf16-gemv" else MAX_KERNEL_ROWS
        if x.is_cuda and rows <= kernel_rows and x.dtype in (torch.bfloat16, torch.float16):
            return wq_linear(x, self.weight, self.scale)
        if self.scale is None:
            return F.linear(x, self.weight.to(x.dtype))
        return F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.mode}"


def quantize_model(model: nn.Module, mode: str) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`QuantLinear` in place (``bf16``: no change).

    Call after loading (and after ``fuse_projections``: per-row scales make fused and separate matrices
    quantize identically). Each bf16 weight is freed as soon as its replacement exists, so the peak is the
    model plus one matrix.
    """
    if mode == "bf16":
        return model
    if mode not in QMAX and mode not in KERNEL_MODES:
        raise ValueError(f"unknown quantization {mode!r}")
    names = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    for name in names:  # by name, so no list keeps the replaced bf16 matrices alive
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child_name, QuantLinear.from_linear(getattr(parent, child_name), mode))
    model.quantization = mode
    return model


def prepare_linears(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """The AR model's linears as decoding wants them: ``int8``/``fp8`` quantized (:func:`quantize_model`);
    ``bf16`` on a CUDA GPU with one-row calls (batch-1 decode steps) through the Triton kernel and every
    other call through cuBLAS as before.

    Why bf16 too: at one activation row the Triton kernel streams every linear of the 5B model faster than
    cuBLAS (H100: 84-102% of copy bandwidth against 68-95%, ``scripts/bench_gemv_sweep.py``), 0.93x the
    decode step. The weights are the same tensors (no copy); prefill, windows and batches are unchanged, and
    CPU runs (the golden checks) never take this path.
    """
    if mode == "bf16":
        return quantize_model(model, "bf16-gemv") if torch.device(device).type == "cuda" else model
    return quantize_model(model, mode)


def linear_bytes(model: nn.Module) -> int:
    """Bytes of every linear weight (and scale) in ``model``, as stored."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear | QuantLinear):
            total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    return total


def quantized_bytes(num_linear_params: int, num_out_channels: int, mode: str, elem: int = 2) -> int:
    """Bytes of linears holding ``num_linear_params`` weights over ``num_out_channels`` rows in ``mode``."""
    if mode not in QMAX:
        return num_linear_params * elem
    return num_linear_params + 4 * num_out_channels
