"""Where the pipeline's stages come from: :class:`StageFactory` builds the real ones from the checkpoint tree.

The pipeline (:class:`~cosmos_cli.pipeline.pipeline.VideoPipeline`) decides *which* stages a run has (T5 only
for a model with cross-attention, the guardrails unless ``--guardrail off``, the text guardrail only where
there is a prompt); a factory decides *what* each one is. The real factory reads NVIDIA's files and reports
every missing one before any model loads; :class:`~cosmos_cli.stages.standins.StandInStages` builds the same
stage classes at the released shapes with random weights (``--load-format dummy``, profiling), behind the
same :class:`~cosmos_cli.stages.base.Stage` interface. No pipeline subclass is needed for either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.stages.ar_model import ARModelStage
from cosmos_cli.stages.base import Stage

if TYPE_CHECKING:
    from cosmos_cli.models.config import ModelArgs
    from cosmos_cli.parallel.dd import DDParallel
    from cosmos_cli.pipeline.pipeline import PipelineConfig


@dataclass(frozen=True)
class StageContext:
    """What every stage is built from: the run's configuration and what the pipeline derived from it."""

    config: PipelineConfig
    layout: CheckpointLayout
    args: ModelArgs
    dtype: torch.dtype
    on_gpu: bool
    dd_parallel: DDParallel | None = None

    @property
    def t5_dtype(self) -> torch.dtype:
        """``--text-encoder-dtype`` (fp32 as NVIDIA runs it, bf16), by default the pipeline's dtype."""
        return {"fp32": torch.float32, "bf16": torch.bfloat16, None: self.dtype}[self.config.text_encoder_dtype]

    @property
    def dd_compile(self) -> bool:
        """The decoder's blocks are compiled on the GPU, except when several ranks share its decoding."""
        return self.config.compile and self.on_gpu and self.dd_parallel is None


class StageFactory:
    """The real stages, reading the checkpoint tree; each method reports its stage's missing files."""

    def ar_model(
        self,
        config: PipelineConfig,
        layout: CheckpointLayout,
        *,
        dtype: torch.dtype,
        on_gpu: bool,
        model_builder: Callable | None = None,
    ) -> ARModelStage:
        """Built first: its architecture (``.args``) sizes every other stage."""
        return ARModelStage(
            layout, dtype=dtype, load_format=config.load_format, compile=config.compile and on_gpu,
            model_builder=model_builder, decoding=config.decoding, scd_window=config.scd_window,
            quantization=config.quantization,
        )  # fmt: skip

    def video_tokenizer(self, ctx: StageContext) -> Stage:
        from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage

        layout = ctx.layout
        layout.require(layout.dv_encoder, layout.dv_decoder, what="DV8x16x16 video tokenizer")
        return VideoTokenizerStage(layout.dv_encoder, layout.dv_decoder, levels=ctx.args.fsq_levels, dtype=ctx.dtype)

    def text_encoder(self, ctx: StageContext) -> Stage:
        from cosmos_cli.stages.text_encoder import TextEncoderStage

        ctx.layout.require(ctx.layout.t5_dir / "config.json", what="T5 text encoder")
        return TextEncoderStage(ctx.layout.t5_dir, dtype=ctx.t5_dtype)

    def diffusion_decoder(self, ctx: StageContext) -> Stage | None:
        """The decoder stage when it is asked for or its files are present (the same answer on every rank)."""
        cfg, layout = ctx.config, ctx.layout
        dd_files = (layout.dd_dir / "model.pt", layout.cv_dir / "decoder.jit", layout.cv_dir / "mean_std.pt")
        if not (cfg.diffusion_decoder or (cfg.diffusion_decoder is None and all(p.exists() for p in dd_files))):
            return None
        layout.require(*dd_files, what="diffusion decoder (or pass --disable-diffusion-decoder)")
        from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage

        return DiffusionDecoderStage(layout, dtype=ctx.dtype, compile=ctx.dd_compile, parallel=ctx.dd_parallel,
                                     quantization=cfg.quantization)  # fmt: skip

    def guardrails(self, ctx: StageContext, *, prompt: bool) -> tuple[Stage | None, Stage]:
        """The text guardrail (only where there is a prompt: ``prompt``) and the video guardrail."""
        from cosmos_cli.guardrail import check_guardrail_available
        from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage

        mode, folder = ctx.config.guardrail, ctx.layout.guardrail_dir
        check_guardrail_available(mode, folder)
        return (TextGuardrailStage(folder, mode) if prompt else None), VideoGuardrailStage(folder, mode)
