"""The diffusion-decoder stage: DV8x16x16 tokens + T5 context -> a sharper video through the 7B DiT.

Reads NVIDIA's layout: ``Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8/model.pt`` (the DiT; a
``cosmos_arch.json`` next to it selects a non-preset size, as the tiny checkpoints do) and
``Cosmos-1.0-Tokenizer-CV8x8x8/{decoder.jit, mean_std.pt}``. The network is built on the meta device and
the checkpoint is memory-mapped and assigned, so loading never holds two copies of the 14 GB of weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cosmos_cli.checkpoints import ARCH_FILE, CheckpointLayout
from cosmos_cli.errors import CheckpointMismatch
from cosmos_cli.io.readahead import read_ahead
from cosmos_cli.models.diffusion_decoder.blocks import sdpa_backends
from cosmos_cli.models.diffusion_decoder.config import DD_7B, DiTConfig
from cosmos_cli.models.diffusion_decoder.cv_tokenizer import LATENT_CHANNELS, CVDecoder
from cosmos_cli.models.diffusion_decoder.decoder import (
    DV_TO_CV_SPATIAL,
    FPS,
    OVERLAP,
    WINDOW,
    DiffusionDecoder,
    num_windows,
)
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, compile_blocks
from cosmos_cli.models.diffusion_decoder.fp8 import quantize_dit_
from cosmos_cli.models.diffusion_decoder.sampler import GuidedDenoiser, SamplerSettings
from cosmos_cli.models.diffusion_decoder.weights import load_network, load_state_dict_file
from cosmos_cli.models.diffusion_decoder.windows import split_with_overlap
from cosmos_cli.pipeline.stage import Stage
from cosmos_cli.quant.linear import check_quantization

if TYPE_CHECKING:
    from cosmos_cli.parallel.dd import DDParallel
# ``--quantization`` is one flag for both big stages (:data:`cosmos_cli.quant.linear.QUANTIZATIONS`): ``fp8``
# puts the DiT's token-stream linears in fp8 (:mod:`cosmos_cli.models.diffusion_decoder.fp8`); ``bf16`` and
# ``int8`` (weight-only, AR model only: the decoder is compute-bound, so int8 weights would not make it
# faster) keep the faithful bf16 network.


class DiffusionDecoderStage(Stage):
    """``run(tokens [B, T, H, W], context [B, L, D]) -> video [B, 3, num_frames, 16H, 16W]`` in [0, 1].

    ``attention`` names the SDPA backends to prefer, in order (``("cudnn", "flash")``; see
    ``scripts/bench_dd.py``'s attention probe); None keeps PyTorch's choice (flash attention on H100).
    """

    name = "diffusion_decoder"

    def __init__(
        self,
        layout: CheckpointLayout,
        *,
        dtype: torch.dtype,
        seed: int = 1,
        num_steps: int = 15,
        guidance: float = 1.8,
        compile: bool = False,
        attention: Sequence[str] | None = None,
        parallel: DDParallel | None = None,
        quantization: str = "bf16",
    ):
        """``parallel``: this rank's place among the ranks that decode one video together (CFG x sequence
        parallel, :mod:`cosmos_cli.parallel.dd`); every rank of that unit must call :meth:`run` alike.
        ``quantization``: see the note above the class."""
        check_quantization(quantization, None, name_only=True)
        self.quantization = quantization
        self.layout = layout
        self.dtype = dtype
        self.seed = seed
        self.settings = SamplerSettings(num_steps=num_steps, guidance=guidance)
        self.compile = compile
        self.attention = None if attention is None else tuple(attention)
        self.parallel = parallel
        self.device = torch.device("cpu")
        self._net: DiffusionDecoderDiT | None = None
        self._cv: CVDecoder | None = None

    @property
    def weights_path(self) -> Path:
        return self.layout.dd_dir / "model.pt"

    def architecture(self) -> DiTConfig:
        """The 7B preset, unless the checkpoint folder carries a ``cosmos_arch.json``."""
        arch = self.layout.dd_dir / ARCH_FILE
        if not arch.exists():
            return DD_7B
        try:
            return DiTConfig.from_json(arch)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointMismatch(f"{arch} is not a valid architecture file ({err})", "delete it") from err

    # ---- Stage contract ------------------------------------------------------------------------
    def load(self, device: torch.device) -> None:
        device = torch.device(device)
        if self.loaded:
            self.to(device)
            return
        cv_dir = self.layout.cv_dir
        self.layout.require(self.weights_path, cv_dir / "decoder.jit", cv_dir / "mean_std.pt", what="diffusion decoder")
        with torch.device("meta"):
            net = DiffusionDecoderDiT(self.architecture())
        with read_ahead(self.weights_path):  # the disk's sequential rate instead of page-fault reads
            load_network(net, load_state_dict_file(self.weights_path), source=str(self.weights_path), assign=True)
            # Casting buffers too is deliberate: NVIDIA runs the RoPE tables in the network dtype.
            net = net.to(device=device, dtype=self.dtype).eval().requires_grad_(False)
        self._prepare(net)
        self._cv = CVDecoder.load(cv_dir, device, self.dtype, self.settings.sigma_data)
        self._net = net
        self.device = device

    def _prepare(self, net: DiffusionDecoderDiT) -> None:
        """After the weights are placed: fp8 linears (``quantization="fp8"``), then compiled blocks."""
        if self.quantization == "fp8":
            quantize_dit_(net)
        if self.compile:
            compile_blocks(net)

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self._net, self._cv) if m is not None]

    def _drop(self) -> None:
        self._net = None
        self._cv = None

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.device = torch.device(device)

    # ---- decoding ------------------------------------------------------------------------------
    def _decoder(self) -> DiffusionDecoder:
        if self._net is None or self._cv is None:
            raise RuntimeError("DiffusionDecoderStage used before load()")
        if self.parallel is None:
            return DiffusionDecoder(self._net, self._cv, self.settings, seed=self.seed)
        factory = self.parallel.denoiser
        return DiffusionDecoder(self._net, self._cv, self.settings, seed=self.seed, make_denoiser=factory)

    def progress_total(self, tokens: torch.Tensor) -> int:
        """How many times ``run`` calls ``on_progress``: guided denoiser calls (16 per window and video)."""
        return tokens.shape[0] * num_windows(tokens.shape[1]) * self.settings.x0_calls

    @torch.inference_mode()
    def warm_up(self, token_grid: tuple[int, int, int], context_len: int) -> None:
        """One guided call at the shape ``run`` will see for a ``[T, h, w]`` token grid: compiles the blocks
        (and picks the attention kernels) ahead of the first video, e.g. while the AR model decodes."""
        net = self._decoder().net
        cfg = net.config
        tokens = torch.zeros((1, 1, *token_grid), dtype=torch.int32, device=self.device)
        window = split_with_overlap(tokens, WINDOW, OVERLAP)[0]
        _, _, t, h, w = window.shape
        context = torch.zeros(1, context_len, cfg.crossattn_emb_channels, dtype=self.dtype, device=self.device)
        denoiser = GuidedDenoiser(net, window, context, guidance=self.settings.guidance,
                                  sigma_data=self.settings.sigma_data, fps=FPS)  # fmt: skip
        generator = torch.Generator(device=self.device).manual_seed(0)
        shape = (1, LATENT_CHANNELS, t, h * DV_TO_CV_SPATIAL, w * DV_TO_CV_SPATIAL)
        x = torch.randn(shape, generator=generator, device=self.device).to(self.dtype) * self.settings.sigma_max
        sigma = torch.full((1,), self.settings.sigma_max, dtype=self.dtype, device=self.device)
        with sdpa_backends(self.attention):
            denoiser(x, sigma)

    @torch.inference_mode()
    def run(
        self,
        tokens: torch.Tensor,
        context: torch.Tensor,
        num_frames: int = 33,
        on_progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """DV indices ``[B, T, H, W]`` + T5 embedding ``[B, L, D]`` -> video ``[B, 3, num_frames, 16H, 16W]``.

        On the CPU, values in [0, 1]; the dtype is the reference's (the stage dtype for one window, float32
        after a blend). ``on_progress(1)`` is called after every guided denoiser call (see
        :meth:`progress_total`).
        """
        on_call = None if on_progress is None else (lambda: on_progress(1))
        with sdpa_backends(self.attention):
            return self._decoder()(tokens, context, num_frames, on_call)
