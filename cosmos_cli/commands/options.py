"""Options shared by several subcommands, defined once so every verb spells them the same way."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli.errors import BadInput
from cosmos_cli.settings import DEFAULT_CHECKPOINT_DIR, ENV_CHECKPOINT_DIR, ENV_DEBUG, enable_debug

CheckpointDirOpt = Annotated[
    Path,
    typer.Option(
        "--checkpoint-dir",
        "--checkpoint_dir",
        envvar=ENV_CHECKPOINT_DIR,
        help="Root of NVIDIA's checkpoints/ tree.",
        show_default=True,
    ),
]
DEFAULT_CHECKPOINT = DEFAULT_CHECKPOINT_DIR

OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", envvar=ENV_DEBUG, callback=enable_debug, help="Show full tracebacks on errors."),
]
"""The one ``--debug``: its callback tells :mod:`cosmos_cli.settings`, which the error boundary asks."""


# ---- how the pipeline is built: shared by `generate` and `serve` ----------------------------------------
class Guardrail(str, Enum):
    full = "full"
    blocklist = "blocklist"
    off = "off"


class OffloadAll(str, Enum):
    none = "none"
    all = "all"


ArModelDirOpt = Annotated[str, typer.Option("--ar-model-dir", help="AR checkpoint folder.")]
GuardrailOpt = Annotated[Guardrail, typer.Option("--guardrail", help="full | blocklist | off.")]
OffloadOpt = Annotated[OffloadAll, typer.Option("--offload", help="all: every stage in host memory between uses.")]
OffloadGuardrailOpt = Annotated[bool, typer.Option("--offload-guardrail-models")]
OffloadTextEncoderOpt = Annotated[bool, typer.Option("--offload-text-encoder-model")]
OffloadTokenizerOpt = Annotated[bool, typer.Option("--offload-tokenizer")]
OffloadArModelOpt = Annotated[bool, typer.Option("--offload-ar-model")]
OffloadDiffusionDecoderOpt = Annotated[bool, typer.Option("--offload-diffusion-decoder")]
PlacementOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--placement",
        help="STAGE=gpu|cpu|disk|stream, e.g. ar_model=cpu or diffusion_decoder=stream (repeatable; docs/offload.md).",
    ),
]
DisableDiffusionDecoderOpt = Annotated[
    bool, typer.Option("--disable-diffusion-decoder", help="Decode with the DV8x16x16 tokenizer instead.")
]
CompileOpt = Annotated[bool, typer.Option("--compile/--no-compile", help="Compiled CUDA-graph decode on GPU.")]
LoadFormatOpt = Annotated[
    str,
    typer.Option("--load-format", help="auto | dummy (every stage: random weights at the released shapes, no files)."),
]
TextEncoderDtypeOpt = Annotated[str | None, typer.Option("--text-encoder-dtype", help="bf16 | fp32.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cuda, cuda:1, cpu (default: cuda if present).")]


def check_text_encoder_dtype(value: str | None) -> None:
    if value not in (None, "bf16", "fp32"):
        raise BadInput(f"--text-encoder-dtype must be bf16 or fp32, got {value}", "use bf16 or fp32")
