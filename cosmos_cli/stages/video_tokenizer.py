"""The DV8x16x16 discrete video tokenizer stage: NVIDIA's TorchScript ``encoder.jit`` / ``decoder.jit``.

Follows the reference's ``DiscreteVideoFSQJITTokenizer`` (``tokenizer/discrete_video.py``): both modules
stay TorchScript, run in bf16, and see the video in chunks of ``pixel_chunk_duration`` frames, at most
``max_enc_batch_size`` / ``max_dec_batch_size`` chunks per call. Token indices are computed from the
encoder's FSQ codes with :func:`cosmos_cli.models.fsq.codes_to_indices`, as the reference pipeline does
(``DiscreteMultimodalTokenizer._tokenize_video``), rather than taken from the encoder's own index output.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from cosmos_cli.errors import BadInput, CheckpointMismatch, ModelNotDownloaded
from cosmos_cli.models import fsq
from cosmos_cli.stages.base import Stage

TEMPORAL_COMPRESSION = 8
SPATIAL_COMPRESSION = 16


def _chunks(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [x[i : i + size] for i in range(0, x.shape[0], size)]


def _codes_of(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The FSQ codes ``[B, d, t, h, w]`` among an encoder's outputs.

    The released ``encoder.jit`` returns ``(indices, codes, dummy_loss)``; NVIDIA's Cosmos-Tokenizer
    README unpacks ``indices, codes``. Picking the first floating-point 5-D tensor works for both.
    """
    if isinstance(output, torch.Tensor):
        return output
    for item in output:
        if isinstance(item, torch.Tensor) and item.is_floating_point() and item.ndim == 5:
            return item
    raise CheckpointMismatch(
        "the video tokenizer encoder returned no FSQ codes", "use the DV8x16x16 tokenizer's encoder.jit"
    )


class VideoTokenizerStage(Stage):
    """Encode ``[B, 3, T, H, W]`` videos in [-1, 1] to token grids ``[B, T', H/16, W/16]`` and back."""

    name = "video_tokenizer"
    loaded_attrs = ("_encoder", "_decoder")

    def __init__(
        self,
        encoder_path: Path,
        decoder_path: Path,
        *,
        levels: Sequence[int],
        dtype: torch.dtype = torch.bfloat16,
        pixel_chunk_duration: int = 33,
        max_enc_batch_size: int = 8,
        max_dec_batch_size: int = 4,
    ):
        if (pixel_chunk_duration - 1) % TEMPORAL_COMPRESSION != 0:
            raise ValueError(f"pixel_chunk_duration must be 1 + 8k, got {pixel_chunk_duration}")
        self.encoder_path = Path(encoder_path)
        self.decoder_path = Path(decoder_path)
        self.levels = [int(level) for level in levels]
        self.dtype = dtype
        self.pixel_chunk_duration = pixel_chunk_duration
        self.latent_chunk_duration = 1 + (pixel_chunk_duration - 1) // TEMPORAL_COMPRESSION
        self.max_enc_batch_size = max_enc_batch_size
        self.max_dec_batch_size = max_dec_batch_size
        self._encoder: torch.jit.ScriptModule | None = None
        self._decoder: torch.jit.ScriptModule | None = None

    @property
    def vocab_size(self) -> int:
        return fsq.codebook_size(self.levels)

    # ---- Stage contract ------------------------------------------------------------------------
    def require_files(self) -> None:
        for path in (self.encoder_path, self.decoder_path):
            if not path.is_file():
                raise ModelNotDownloaded(
                    f"video tokenizer file missing: {path}",
                    "run: cosmos-cli download to fetch Cosmos-1.0-Tokenizer-DV8x16x16",
                )

    def _load(self, device: torch.device) -> None:
        # Same as NVIDIA: the TensorExpr fuser makes consecutive calls of these modules disagree
        # (pytorch/pytorch#74534).
        torch._C._jit_set_texpr_fuser_enabled(False)
        self._encoder = self._load_jit(self.encoder_path)
        self._decoder = self._load_jit(self.decoder_path)

    def _load_jit(self, path: Path) -> torch.jit.ScriptModule:
        try:
            with warnings.catch_warnings():
                # The checkpoint format is NVIDIA's choice; torch 2.10+ flags TorchScript as deprecated.
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
                module = torch.jit.load(str(path), map_location=self.device)
        except RuntimeError as err:
            raise CheckpointMismatch(
                f"{path} is not a TorchScript archive ({str(err).splitlines()[0]})",
                "delete it and download the tokenizer again",
            ) from err
        module.eval().to(self.dtype)
        for param in module.parameters():
            param.requires_grad_(False)
        return module

    # ---- encode / decode -----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, T, H, W]`` in [-1, 1], T a multiple of the chunk -> int64 ``[B, T', h, w]``."""
        self.require_loaded("encode")
        b, c, t, h, w = video.shape
        chunk = self.pixel_chunk_duration
        if c != 3 or t % chunk != 0 or h % SPATIAL_COMPRESSION != 0 or w % SPATIAL_COMPRESSION != 0:
            raise BadInput(
                f"video tensor {tuple(video.shape)} does not fit the tokenizer",
                f"need [B, 3, T, H, W], T a multiple of {chunk}, H and W multiples of {SPATIAL_COMPRESSION}",
            )
        n = t // chunk
        # b c (n t) h w -> (b n) c t h w
        chunks = video.reshape(b, c, n, chunk, h, w).transpose(1, 2).reshape(b * n, c, chunk, h, w)
        codes = []
        for part in _chunks(chunks, self.max_enc_batch_size):
            codes.append(_codes_of(self._encoder(part.to(self.device, self.dtype))))
        quantized = torch.cat(codes, dim=0)
        if quantized.ndim != 5 or quantized.shape[1] != len(self.levels):
            raise CheckpointMismatch(
                f"{self.encoder_path} returned codes of shape {tuple(quantized.shape)}, "
                f"expected {len(self.levels)} channels for FSQ levels {self.levels}",
                "use the DV8x16x16 tokenizer that matches the AR model",
            )
        if quantized.shape[2] != self.latent_chunk_duration:
            raise CheckpointMismatch(
                f"{self.encoder_path} returned {quantized.shape[2]} latent frames per {chunk}-frame chunk, "
                f"expected {self.latent_chunk_duration}",
                "use the DV8x16x16 tokenizer (8x temporal compression)",
            )
        indices = fsq.codes_to_indices(quantized.permute(0, 2, 3, 4, 1), self.levels)
        # (b n) t h w -> b (n t) h w
        return indices.reshape(b, n * self.latent_chunk_duration, *indices.shape[2:])

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token grid ``[B, T', h, w]`` -> float32 video ``[B, 3, T, 16h, 16w]`` in [-1, 1]."""
        self.require_loaded("decode")
        b, t, h, w = indices.shape
        latent = self.latent_chunk_duration
        if t % latent != 0:
            raise BadInput(
                f"token grid {tuple(indices.shape)} has {t} latent frames",
                f"need a multiple of {latent} (one {self.pixel_chunk_duration}-frame chunk each)",
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.vocab_size):
            raise BadInput(
                f"token ids outside the video vocabulary [0, {self.vocab_size})",
                "decode only video tokens (strip <bov> and padding first)",
            )
        n = t // latent
        chunks = indices.reshape(b * n, latent, h, w).to(self.device)
        videos = [self._decoder(part) for part in _chunks(chunks, self.max_dec_batch_size)]
        video = torch.cat(videos, dim=0).float()
        if video.shape[2] != self.pixel_chunk_duration:
            raise CheckpointMismatch(
                f"{self.decoder_path} returned {video.shape[2]} frames per chunk, expected {self.pixel_chunk_duration}",
                "use the DV8x16x16 tokenizer (8x temporal compression)",
            )
        c, tt, hh, ww = video.shape[1:]
        # (b n) c t h w -> b c (n t) h w
        return video.reshape(b, n, c, tt, hh, ww).transpose(1, 2).reshape(b, c, n * tt, hh, ww)
