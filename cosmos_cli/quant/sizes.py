"""Bytes of the AR model's weights under each ``--quantization``, from its shape alone (for the offload plan
and the batch-size chooser; nothing is allocated: the model is built and quantized on the meta device)."""

from __future__ import annotations

import torch
from torch import nn


def quantized_meta_model(args, quantization: str, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """The transformer on the meta device in ``dtype``, its linears quantized as the AR stage does."""
    from cosmos_cli.models.ar.transformer import Transformer
    from cosmos_cli.quant.linear import quantize_model

    with torch.device("meta"):
        model = Transformer(args).to(dtype)
        return quantize_model(model, quantization)


def ar_weight_bytes(args, quantization: str, elem: int = 2) -> int:
    """Bytes the AR weights occupy on the device: ``elem`` per unquantized parameter (2: bf16, 4: fp32),
    1 per quantized linear weight plus a float32 scale per output channel."""
    dtype = {2: torch.bfloat16, 4: torch.float32}[elem]
    model = quantized_meta_model(args, quantization, dtype)
    return sum(p.numel() * p.element_size() for p in model.parameters())
