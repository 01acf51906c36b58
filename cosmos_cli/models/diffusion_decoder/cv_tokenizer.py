"""The CV8x8x8 continuous tokenizer's decoder, as the diffusion decoder uses it.

NVIDIA's ``model.decode(z)`` is ``decoder.jit((z / sigma_data) * std + mean)`` (``model_t2w.py::decode``,
``pretrained_vae.py``): the DiT samples a latent normalised per channel *and per latent frame*, with
``mean``/``std`` read from ``mean_std.pt`` as ``view(16, -1)[:, :8]`` (8 = latent frames of one 57-frame
pixel chunk), cast to the tokenizer dtype. The decoder turns 8 latent frames into 57 pixel frames at 8x
the spatial size. The CV *encoder* is never run at inference and is not loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cosmos_cli.errors import CheckpointMismatch

LATENT_CHANNELS = 16
TEMPORAL_COMPRESSION = 8
SPATIAL_COMPRESSION = 8
PIXEL_CHUNK = 57
"""Pixel frames per decoder call (the experiment's override of the default 121)."""


def latent_frames(pixel_frames: int) -> int:
    """Causal 8x compression: frame 0 alone, then groups of 8."""
    return 1 + (pixel_frames - 1) // TEMPORAL_COMPRESSION


def pixel_frames(latent: int) -> int:
    return 1 + (latent - 1) * TEMPORAL_COMPRESSION


class CVDecoder(nn.Module):
    """``decoder.jit`` plus the latent statistics; ``forward`` maps sampled latents to pixels in [-1, 1]."""

    def __init__(self, decoder: nn.Module, mean: torch.Tensor, std: torch.Tensor, sigma_data: float = 0.5):
        super().__init__()
        self.decoder = decoder
        self.sigma_data = sigma_data
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)

    @property
    def latent_chunk(self) -> int:
        return self.latent_mean.shape[2]

    @classmethod
    def load(cls, folder: Path, device: torch.device, dtype: torch.dtype, sigma_data: float = 0.5) -> CVDecoder:
        """Read ``decoder.jit`` and ``mean_std.pt`` from a ``Cosmos-1.0-Tokenizer-CV8x8x8`` folder."""
        path = Path(folder) / "decoder.jit"
        try:
            decoder = torch.jit.load(str(path), map_location=device)
        except RuntimeError as err:
            raise CheckpointMismatch(
                f"{path} is not a TorchScript archive ({str(err).splitlines()[0]})",
                "delete it and download the CV8x8x8 tokenizer again",
            ) from err
        decoder.eval().to(dtype)
        for param in decoder.parameters():
            param.requires_grad_(False)
        chunk = latent_frames(PIXEL_CHUNK)
        mean, std = read_mean_std(Path(folder) / "mean_std.pt", chunk)
        stats = [t.to(dtype).reshape(1, LATENT_CHANNELS, chunk, 1, 1).to(device) for t in (mean, std)]
        return cls(decoder, *stats, sigma_data=sigma_data)

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Sampled latent ``[B, 16, 8k, h, w]`` -> clamped pixels ``[B, 3, 57k, 8h, 8w]``, latent dtype."""
        in_dtype = latent.dtype
        b, c, t, h, w = latent.shape
        if c != LATENT_CHANNELS or t % self.latent_chunk:
            raise ValueError(f"latent {tuple(latent.shape)}: need 16 channels and a multiple of {self.latent_chunk}")
        z = latent / self.sigma_data
        n = t // self.latent_chunk
        z = z.reshape(b, c, n, self.latent_chunk, h, w).transpose(1, 2).reshape(b * n, c, self.latent_chunk, h, w)
        z = z * self.latent_std.to(in_dtype) + self.latent_mean.to(in_dtype)
        dtype = self.latent_std.dtype
        pixels = self.decoder(z.to(dtype)).to(in_dtype)
        if pixels.shape[2] != PIXEL_CHUNK or pixels.shape[-2:] != (
            h * SPATIAL_COMPRESSION,
            w * SPATIAL_COMPRESSION,
        ):
            raise CheckpointMismatch(
                f"the CV decoder returned {tuple(pixels.shape)} for a latent chunk {tuple(z.shape)}",
                f"use the CV8x8x8 tokenizer ({PIXEL_CHUNK} frames per 8 latent frames, 8x spatial)",
            )
        pixels = pixels.reshape(b, n, *pixels.shape[1:]).transpose(1, 2)
        return pixels.reshape(b, pixels.shape[1], n * PIXEL_CHUNK, *pixels.shape[-2:]).clamp(-1, 1)


def read_mean_std(path: Path, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)``, each ``[16, chunk]``: the first ``chunk`` latent frames of each channel."""
    try:
        mean, std = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable or not a pair: one user-facing problem
        raise CheckpointMismatch(f"cannot read {path} as (mean, std)", "download the CV8x8x8 tokenizer again") from err
    out = []
    for t in (mean, std):
        if t.numel() % LATENT_CHANNELS or t.numel() // LATENT_CHANNELS < chunk:
            raise CheckpointMismatch(
                f"{path}: statistics {tuple(t.shape)} lack {LATENT_CHANNELS} channels x {chunk} frames",
                "download the CV8x8x8 tokenizer again",
            )
        out.append(t.reshape(LATENT_CHANNELS, -1)[:, :chunk].float())
    return out[0], out[1]
