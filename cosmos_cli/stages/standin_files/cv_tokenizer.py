"""Write a stand-in ``Cosmos-1.0-Tokenizer-CV8x8x8`` folder: TorchScript ``encoder.jit`` / ``decoder.jit`` with
the released files' interface and compression, and ``mean_std.pt``.

16 channels, causal 8x in time (frame 0 alone, then groups of 8), 8x8 in space; the encoder returns
``(latent, (zeros, zeros))`` like the released identity-distribution encoder; ``mean_std.pt`` holds a mean and
a std per channel and per latent frame. The tokenizer is not learned: it averages each 8x8 patch and temporal
group to an RGB value and mixes it into 16 channels with a fixed full-rank matrix; the decoder applies the
pseudo-inverse and upsamples, so any latent decodes to a smooth, plausible image. It is resolution-independent,
which lets the ``--load-format dummy`` diffusion decoder use it at any size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.checkpoints import CV_TOKENIZER_DIR
from cosmos_cli.models.diffusion_decoder.cv_tokenizer import (
    LATENT_CHANNELS,
    SPATIAL_COMPRESSION,
    TEMPORAL_COMPRESSION,
)
from cosmos_cli.stages.standin_files.atomic_write import save_script, save_tensors

STATS_FRAMES = 16
"""Latent frames covered by ``mean_std.pt`` (the release's default 121-frame chunk); the decoder uses 8."""


def _mixing_matrix(generator: torch.Generator) -> torch.Tensor:
    """``[16, 3]``: channels 0-2 carry R, G, B; the rest fixed random mixtures (full column rank)."""
    extra = 0.5 * torch.randn(LATENT_CHANNELS - 3, 3, generator=generator)
    return torch.cat([torch.eye(3), extra])


class TinyCVEncoder(nn.Module):
    """``[B, 3, 1 + 8k, H, W]`` in [-1, 1] -> ``([B, 16, 1 + k, H/8, W/8], (zeros, zeros))``."""

    def __init__(self, mixing: torch.Tensor):
        super().__init__()
        self.temporal, self.spatial = TEMPORAL_COMPRESSION, SPATIAL_COMPRESSION
        self.mix = nn.Conv3d(3, LATENT_CHANNELS, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(mixing.reshape(LATENT_CHANNELS, 3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, c, t, h, w = x.shape
        rest = x[:, :, 1:].reshape(b, c, (t - 1) // self.temporal, self.temporal, h, w).mean(3)
        frames = torch.cat([x[:, :, :1], rest], dim=2)
        pooled = F.avg_pool3d(frames, kernel_size=(1, self.spatial, self.spatial))
        zeros = torch.zeros(1, dtype=x.dtype, device=x.device)
        return self.mix(pooled), (zeros, zeros)


class TinyCVDecoder(nn.Module):
    """``[B, 16, 1 + k, h, w]`` -> ``[B, 3, 1 + 8k, 8h, 8w]``: pseudo-inverse mix, bilinear upsampling."""

    def __init__(self, mixing: torch.Tensor):
        super().__init__()
        self.temporal, self.spatial = TEMPORAL_COMPRESSION, SPATIAL_COMPRESSION
        self.unmix = nn.Conv3d(LATENT_CHANNELS, 3, 1, bias=False)
        with torch.no_grad():
            self.unmix.weight.copy_(torch.linalg.pinv(mixing).reshape(3, LATENT_CHANNELS, 1, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rgb = self.unmix(z)
        b, c, t, h, w = rgb.shape
        frames = rgb.transpose(1, 2).reshape(b * t, c, h, w)
        size = [h * self.spatial, w * self.spatial]
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        video = frames.reshape(b, t, c, size[0], size[1]).transpose(1, 2)
        rest = video[:, :, 1:].repeat_interleave(self.temporal, dim=2)
        return torch.cat([video[:, :, :1], rest], dim=2)


def write_tiny_cv_tokenizer(root: Path, seed: int = 0) -> None:
    """Write ``root/Cosmos-1.0-Tokenizer-CV8x8x8/{encoder.jit, decoder.jit, mean_std.pt}``."""
    folder = Path(root) / CV_TOKENIZER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + 1)
    mixing = _mixing_matrix(generator)
    save_script(TinyCVEncoder(mixing), folder / "encoder.jit")
    save_script(TinyCVDecoder(mixing), folder / "decoder.jit")
    shape = (1, LATENT_CHANNELS, STATS_FRAMES, 1, 1)
    mean = 0.05 * torch.randn(shape, generator=generator)
    std = 0.5 + 0.1 * torch.rand(shape, generator=generator)
    save_tensors((mean, std), folder / "mean_std.pt")
