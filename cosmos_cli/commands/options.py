"""Options shared by several subcommands, defined once so every verb spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli.settings import DEFAULT_CHECKPOINT_DIR, ENV_CHECKPOINT_DIR, ENV_DEBUG

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

OutputDirOpt = Annotated[
    Path,
    typer.Option("--output-dir", "--video_save_folder", help="Folder that receives the outputs."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same video.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", envvar=ENV_DEBUG, help="Show full tracebacks on errors."),
]
