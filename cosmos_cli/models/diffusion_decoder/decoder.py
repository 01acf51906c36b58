"""DV8x16x16 token grids + T5 context -> videos: ``dd/inference.py::diffusion_decoder_process_tokens``.

Per sample: split the token grid into 8-latent-frame windows (overlap 2, reflect padding); per window,
draw the initial noise from a generator seeded with ``seed`` (NVIDIA: 1, on the GPU, for every window and
every run) and run the guided 2ab sampler from sigma 80; decode every window with the CV8x8x8 decoder,
clamp, blend over 2 pixel frames, keep the first ``num_frames`` frames and map to [0, 1].

The DV8x16x16 decode that the reference runs on every window and then discards
(``tokenizer_corruptor.decode``, ``return_recon_x=False``) is skipped: it cannot change the output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cosmos_cli.errors import BadInput
from cosmos_cli.models.diffusion_decoder.cv_tokenizer import LATENT_CHANNELS, CVDecoder, pixel_frames
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT
from cosmos_cli.models.diffusion_decoder.sampler import (
    GuidedDenoiser,
    SamplerSettings,
    sample,
    sigma_schedule,
)
from cosmos_cli.models.diffusion_decoder.windows import linear_blend, split_with_overlap, window_starts

WINDOW = 8
"""Latent frames per window: ``(57 - 1) // 8 + 1``. The reference's state shape takes its 8 from the CV
tokenizer's *spatial* compression, which equals this only by coincidence."""
OVERLAP = 2
FPS = 24.0
DV_TO_CV_SPATIAL = 2
"""DV tokens are 16x16 pixels, CV latents 8x8: the latent grid is twice the token grid."""


def num_windows(latent_frames: int) -> int:
    return len(window_starts(latent_frames, WINDOW, OVERLAP))


def output_frames(latent_frames: int) -> int:
    """Pixel frames after blending all windows (before truncation to the requested length)."""
    n = num_windows(latent_frames)
    return n * pixel_frames(WINDOW) - OVERLAP * (n - 1) if n else 0


def initial_noise(shape: tuple[int, ...], seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.randn`` from a fresh generator on ``device`` (on CUDA, seed 1, bf16: NVIDIA's draw)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return torch.randn(shape, dtype=dtype, device=device, generator=generator)


class DiffusionDecoder:
    """The whole token -> pixel path around a loaded DiT and CV decoder (no loading, no offloading)."""

    def __init__(
        self,
        net: DiffusionDecoderDiT,
        cv_decoder: CVDecoder,
        settings: SamplerSettings,
        seed: int = 1,
        make_denoiser: Callable[..., GuidedDenoiser] = GuidedDenoiser,
    ):
        """``make_denoiser(net, tokens, context, guidance=, sigma_data=, fps=)`` builds each window's guided
        denoiser: :class:`GuidedDenoiser` in one process, a parallel runner's factory across ranks."""
        self.net = net
        self.make_denoiser = make_denoiser
        self.cv_decoder = cv_decoder
        self.settings = settings
        self.seed = seed

    def validate(self, tokens: torch.Tensor, context: torch.Tensor, num_frames: int) -> None:
        cfg = self.net.config
        if tokens.ndim != 4 or tokens.is_floating_point():
            raise BadInput(f"DV tokens must be an integer tensor [B, T, H, W], got {tuple(tokens.shape)}")
        if context.ndim != 3 or context.shape[0] != tokens.shape[0] or context.shape[2] != cfg.crossattn_emb_channels:
            raise BadInput(
                f"text embedding {tuple(context.shape)} does not fit tokens {tuple(tokens.shape)}",
                f"pass a [B, L, {cfg.crossattn_emb_channels}] T5 embedding, one per video",
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.token_voc):
            raise BadInput(
                f"DV token ids outside [0, {cfg.token_voc})",
                "pass video token indices only (no <bov>, no padding)",
            )
        available = output_frames(tokens.shape[1])
        if not 1 <= num_frames <= available:
            raise BadInput(
                f"cannot produce {num_frames} frames from {tokens.shape[1]} latent frames",
                f"ask for 1..{available} frames",
            )

    @torch.no_grad()
    def __call__(
        self,
        tokens: torch.Tensor,
        context: torch.Tensor,
        num_frames: int,
        on_call: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Tokens ``[B, T, h, w]`` + context ``[B, L, D]`` -> video ``[B, 3, num_frames, 16h, 16w]``, [0, 1].

        The result is on the CPU in the reference's dtype: the network dtype for a single window, float32
        when windows were blended (so converting to uint8 rounds as NVIDIA's pipeline does).
        """
        self.validate(tokens, context, num_frames)
        return torch.stack(
            [self._decode_one(tokens[i], context[i : i + 1], num_frames, on_call) for i in range(tokens.shape[0])]
        )

    def _decode_one(self, tokens: torch.Tensor, context: torch.Tensor, num_frames: int, on_call) -> torch.Tensor:
        weight = self.net.x_embedder.proj[1].weight
        device, dtype = weight.device, weight.dtype
        s = self.settings
        sigmas = sigma_schedule(s.num_steps, s.sigma_min, s.sigma_max, s.rho)
        context = context.to(device=device, dtype=dtype)
        latents = []
        for window in split_with_overlap(tokens[None, None].to(device), WINDOW, OVERLAP):
            _, _, t, h, w = window.shape
            shape = (1, LATENT_CHANNELS, t, h * DV_TO_CV_SPATIAL, w * DV_TO_CV_SPATIAL)
            x = initial_noise(shape, self.seed, dtype, device) * s.sigma_max
            denoiser = self.make_denoiser(
                self.net,
                window.to(torch.int32),
                context,
                guidance=s.guidance,
                sigma_data=s.sigma_data,
                fps=FPS,
            )
            latents.append(sample(denoiser, x, sigmas, on_call))
        pixels = [self.cv_decoder(latent).cpu() for latent in latents]
        video = linear_blend(pixels, OVERLAP)[:, :, :num_frames]
        return (1 + video[0]) / 2
