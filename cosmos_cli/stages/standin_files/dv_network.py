"""A tiny, hand-designed stand-in for the DV8x16x16 tokenizer network (no learned weights).

It keeps everything the pipeline can observe of the real ``encoder.jit`` / ``decoder.jit``: the call
signatures and return values, causal 8x temporal compression (frame 0 alone, then groups of 8), 16x16
spatial compression, and an FSQ codebook with the given levels. The module layout mirrors the reference's
``encoder_jit()`` / ``decoder_jit()`` (``encoder`` -> ``quant_conv`` -> ``quantizer`` and ``inv_quant`` ->
``post_quant_conv`` -> ``decoder``).

Instead of a learned network it averages each 16x16 patch (and each temporal group) to one RGB value,
maps RGB to a luma/chroma code space with a fixed matrix and quantises it; the decoder inverts the matrix
and repeats each value over its patch and group. A decoded video is therefore a blocky, recognisable
version of the input, and the token grid has the spatial and temporal redundancy of real video, which
makes it useful for end-to-end tests and speculative-decoding measurements.
"""

from __future__ import annotations

import torch
from torch import nn

from cosmos_cli.models import fsq

# RGB (in [-1, 1]) -> BT.601 luma and the two colour differences, each scaled to [-1, 1].
_COLOUR_DIRECTIONS = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.299 / 1.772, -0.587 / 1.772, 0.886 / 1.772],
        [0.701 / 1.402, -0.587 / 1.402, -0.114 / 1.402],
    ]
)
_CHROMA_GAIN = 3.0
"""Natural video rarely uses more than half of the chroma range; the gain spends the levels where it does."""


def colour_matrix(levels: list[int]) -> torch.Tensor:
    """Rows: the colour direction each code channel carries (luma, blue, red, luma, ...), chroma amplified."""
    rows = []
    for i in range(len(levels)):
        gain = 1.0 if i % 3 == 0 else _CHROMA_GAIN
        rows.append(_COLOUR_DIRECTIONS[i % 3] * gain)
    return torch.stack(rows)


def code_range(levels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest FSQ code per channel: -1 and ``((level - 1) // 2) / (level // 2)``."""
    low = torch.full((len(levels),), -1.0)
    high = torch.tensor([((level - 1) // 2) / (level // 2) for level in levels])
    return low, high


class CausalPatchPool(nn.Module):
    """Average frame 0 alone and each following group of ``temporal`` frames, then each spatial patch."""

    def __init__(self, temporal: int, spatial: int):
        super().__init__()
        self.temporal = temporal
        self.spatial = spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if (t - 1) % self.temporal != 0 or h % self.spatial != 0 or w % self.spatial != 0:
            raise ValueError("input must have 1 + k*temporal frames and sides divisible by spatial")
        groups = (t - 1) // self.temporal
        dtype = x.dtype
        x = x.float()  # average in float32 (CPU has no bf16 pooling, and bf16 sums of 2048 values drift)
        rest = x[:, :, 1:].reshape(b, c, groups, self.temporal, h, w).mean(dim=3)
        x = torch.cat([x[:, :, :1], rest], dim=2)
        x = x.reshape(b, c, groups + 1, h // self.spatial, self.spatial, w // self.spatial, self.spatial)
        return x.mean(dim=[4, 6]).to(dtype)


class CodeProjection(nn.Module):
    """Fixed affine map RGB -> code space, then the inverse of FSQ's tanh bound.

    The affine part spreads each colour value in [-1, 1] over its channel's full code range; undoing the
    tanh makes the FSQ grid evenly spaced in colour, so every level is used.
    """

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels = levels
        low, high = code_range(levels)
        scale = (high - low) / 2.0
        self.conv = nn.Conv3d(3, len(levels), kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_((colour_matrix(levels) * scale[:, None])[:, :, None, None, None])
            self.conv.bias.copy_((high + low) / 2.0)
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        low = self.low.float().view(-1, 1, 1, 1)
        high = self.high.float().view(-1, 1, 1, 1)
        codes = torch.clamp(self.conv(rgb).float(), low, high)
        return fsq.inverse_bound(codes.permute(0, 2, 3, 4, 1), self.levels).permute(0, 4, 1, 2, 3)


class FSQuantizer(nn.Module):
    """FSQ with the reference's interface: ``z [B, d, t, h, w]`` -> ``(indices, codes, dummy_loss)``."""

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels = levels

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        codes = fsq.quantize(z.permute(0, 2, 3, 4, 1), self.levels)
        indices = fsq.codes_to_indices(codes, self.levels)
        out = codes.permute(0, 4, 1, 2, 3).to(z.dtype)
        dummy_loss = torch.zeros_like(out.mean(dim=[1, 2, 3], keepdim=True))
        return indices, out, dummy_loss


class TinyDVEncoder(nn.Module):
    """``encoder.jit``: video ``[B, 3, T, H, W]`` in [-1, 1] -> ``(indices [B, t, h, w], codes, loss)``."""

    def __init__(self, levels: list[int], temporal: int = 8, spatial: int = 16):
        super().__init__()
        self.encoder = CausalPatchPool(temporal, spatial)
        self.quant_conv = CodeProjection(levels)
        self.quantizer = FSQuantizer(levels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.quant_conv(self.encoder(x)).to(x.dtype)
        return self.quantizer(z)


class InvQuantizer(nn.Module):
    """Indices ``[B, t, h, w]`` -> FSQ codes ``[B, d, t, h, w]`` (the reference's ``InvQuantizerJit``)."""

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels = levels

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return fsq.indices_to_codes(indices, self.levels).permute(0, 4, 1, 2, 3)


class CausalPatchUnpool(nn.Module):
    """Repeat latent frame 0 once and every later latent frame ``temporal`` times, each value per patch."""

    def __init__(self, temporal: int, spatial: int):
        super().__init__()
        self.temporal = temporal
        self.spatial = spatial

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        rest = rgb[:, :, 1:].repeat_interleave(self.temporal, dim=2)
        x = torch.cat([rgb[:, :, :1], rest], dim=2)
        x = x.repeat_interleave(self.spatial, dim=3).repeat_interleave(self.spatial, dim=4)
        return x.clamp(-1.0, 1.0)


class TinyDVDecoder(nn.Module):
    """``decoder.jit``: indices ``[B, t, h, w]`` -> video ``[B, 3, 1 + (t-1)*8, 16h, 16w]`` in [-1, 1]."""

    def __init__(self, levels: list[int], temporal: int = 8, spatial: int = 16):
        super().__init__()
        self.inv_quant = InvQuantizer(levels)
        self.post_quant_conv = nn.Conv3d(len(levels), 3, kernel_size=1)
        self.decoder = CausalPatchUnpool(temporal, spatial)
        encode = CodeProjection(levels).conv
        weight = encode.weight[:, :, 0, 0, 0]
        # Least squares weighted by each channel's resolution: finer channels count more.
        precision = torch.tensor([float(level - 1) for level in levels])[:, None]
        inverse = torch.linalg.pinv(weight * precision) * precision.T
        with torch.no_grad():
            self.post_quant_conv.weight.copy_(inverse[:, :, None, None, None])
            self.post_quant_conv.bias.copy_(-inverse @ encode.bias)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        codes = self.inv_quant(indices).to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(codes))
