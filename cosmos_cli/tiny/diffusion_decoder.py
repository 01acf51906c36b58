"""Write a tiny diffusion decoder and CV8x8x8 tokenizer in the released files' formats and folder names.

``Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8/``: ``model.pt`` (``net.``-prefixed DiT weights plus a
``logvar.*`` head, like the release), ``aux_vars.pt`` (the generic prompt's ``context``/``context_mask``,
read by the base models) and ``cosmos_arch.json`` (the tiny architecture; the real folder has none, so the
7B preset applies there).

``Cosmos-1.0-Tokenizer-CV8x8x8/``: TorchScript ``encoder.jit`` / ``decoder.jit`` with the real interface
and compression (16 channels, causal 8x in time: frame 0 alone then groups of 8, 8x8 in space; the encoder
returns ``(latent, (zeros, zeros))`` like the released identity-distribution encoder), and ``mean_std.pt``
(per channel and per latent frame). The tokenizer is not learned: it averages each 8x8 patch and temporal
group to an RGB value and mixes it into 16 channels with a fixed full-rank matrix; the decoder applies the
pseudo-inverse and upsamples, so any latent decodes to a smooth, plausible image.

Sizes fit the tiny pipeline (33 frames of 64x96 -> DV grid [5, 4, 6], CV latent [16, 5, 8, 12]; the
decoder works on 8-latent-frame windows): the full 15-step guided sampler runs in about a second on a CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.checkpoints import ARCH_FILE, CV_TOKENIZER_DIR, DIFFUSION_DECODER_DIR
from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.models.diffusion_decoder.cv_tokenizer import (
    LATENT_CHANNELS,
    SPATIAL_COMPRESSION,
    TEMPORAL_COMPRESSION,
)
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_

TINY_CONTEXT_DIM = 48
"""Width of the tiny T5 embedding (``cosmos_cli.tiny.t5.write_tiny_t5``'s default ``d_model``)."""
TINY_CONTEXT_LEN = 512
STATS_FRAMES = 16
"""Latent frames covered by ``mean_std.pt`` (the release's default 121-frame chunk); the decoder uses 8."""


def tiny_dd_config(token_voc: int, context_dim: int = TINY_CONTEXT_DIM) -> DiTConfig:
    """The 7B decoder's structure at toy width: 2 blocks of 64 channels, 2 heads of 32."""
    return DiTConfig(
        name="cosmos-dd-tiny",
        model_channels=64,
        num_blocks=2,
        num_heads=2,
        adaln_lora_dim=16,
        crossattn_emb_channels=context_dim,
        token_voc=token_voc,
        token_dim=8,
    )


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


def _replace(path: Path, save) -> None:
    """Write through a temporary name in the same folder, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    save(tmp)
    os.replace(tmp, path)


def _save_tensors(obj, path: Path) -> None:
    _replace(path, lambda tmp: torch.save(obj, tmp))


def write_tiny_cv_tokenizer(root: Path, seed: int = 0) -> None:
    """Write ``root/Cosmos-1.0-Tokenizer-CV8x8x8/{encoder.jit, decoder.jit, mean_std.pt}``."""
    folder = Path(root) / CV_TOKENIZER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + 1)
    mixing = _mixing_matrix(generator)
    for name, module in (("encoder.jit", TinyCVEncoder(mixing)), ("decoder.jit", TinyCVDecoder(mixing))):
        scripted = torch.jit.script(module.eval())
        _replace(folder / name, lambda tmp, s=scripted: torch.jit.save(s, str(tmp)))
    shape = (1, LATENT_CHANNELS, STATS_FRAMES, 1, 1)
    mean = 0.05 * torch.randn(shape, generator=generator)
    std = 0.5 + 0.1 * torch.rand(shape, generator=generator)
    _save_tensors((mean, std), folder / "mean_std.pt")


def write_tiny_diffusion_decoder(
    root: Path, *, token_voc: int, seed: int = 0, context_dim: int = TINY_CONTEXT_DIM
) -> None:
    """Write the tiny diffusion decoder (``model.pt``, ``aux_vars.pt``, ``cosmos_arch.json``) and the tiny
    CV8x8x8 tokenizer under ``root``, replacing older copies.

    ``token_voc`` is the DV vocabulary (1600 for the tiny AR model); ``context_dim`` the T5 width.
    """
    config = tiny_dd_config(token_voc, context_dim)
    folder = Path(root) / DIFFUSION_DECODER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    net = DiffusionDecoderDiT(config)
    init_random_(net, generator)
    state = {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    # The release's training-only uncertainty head: FourierFeatures(128) buffers and Linear(128, 1).
    state["logvar.0.freqs"] = 2 * torch.pi * torch.randn(128, generator=generator)
    state["logvar.0.phases"] = 2 * torch.pi * torch.rand(128, generator=generator)
    state["logvar.1.weight"] = 0.01 * torch.randn(1, 128, generator=generator)
    _save_tensors(state, folder / "model.pt")

    words = 12
    context = torch.zeros(1, TINY_CONTEXT_LEN, context_dim)
    context[:, :words] = 0.2 * torch.randn(1, words, context_dim, generator=generator)
    aux = {"context": context, "context_mask": torch.ones(1, TINY_CONTEXT_LEN, dtype=torch.bool)}
    _save_tensors(aux, folder / "aux_vars.pt")
    _replace(folder / ARCH_FILE, lambda tmp: tmp.write_text(json.dumps(config.to_json(), indent=1)))
    write_tiny_cv_tokenizer(root, seed)
