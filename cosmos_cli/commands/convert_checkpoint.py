"""`cosmos-cli convert-checkpoint`: a NeMo checkpoint -> NVIDIA's released layout (model.pt), or back.

The released layout lets every tool that reads NVIDIA's ``model.pt`` run a NeMo post-trained model;
``--to nemo`` gives NeMo a starting point from our files. Each conversion is read back and compared
tensor by tensor before the output folder appears under its final name (``docs/nemo.md``).
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli.commands.options import DebugOpt, OverwriteOpt
from cosmos_cli.errors import BadInput


class Target(str, Enum):
    released = "released"
    nemo = "nemo"


DTYPES = {"bf16": "bfloat16", "fp32": "float32", "keep": None}


def command(
    source: Annotated[Path, typer.Argument(help="NeMo checkpoint folder (or, with --to nemo, a model.pt folder).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write (must not exist).")],
    to: Annotated[Target, typer.Option("--to", help="released (model.pt + config.json) | nemo.")] = Target.released,
    dtype: Annotated[str, typer.Option("--dtype", help="bf16 | fp32 | keep (the source's).")] = "keep",
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="--to nemo: one key per layer instead of mcore's stacked keys.")
    ] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Read back and compare every tensor.")] = True,
    overwrite: OverwriteOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert an AR model checkpoint between NeMo 2 (torch_dist) and NVIDIA's released model.pt layout."""
    import torch

    from cosmos_cli.console import info, stdout

    if dtype not in DTYPES:
        raise BadInput(f"--dtype must be bf16, fp32 or keep, got {dtype!r}", "use e.g. --dtype bf16")
    cast = getattr(torch, DTYPES[dtype]) if DTYPES[dtype] else None
    if not source.exists():
        raise BadInput(f"{source} does not exist", "give the checkpoint folder to convert")
    if output.exists() and not overwrite:
        raise BadInput(f"{output} already exists", "pass --overwrite to replace it, or choose another --output")
    started = time.perf_counter()
    if to == Target.released:
        from cosmos_cli.nemo.convert import write_released
        from cosmos_cli.nemo.layout import find_nemo
        from cosmos_cli.nemo.state import NemoCheckpoint

        if find_nemo(source) is None:
            raise BadInput(f"{source} is not a NeMo checkpoint (no weights/.metadata)",
                           "for a model.pt folder use --to nemo")  # fmt: skip
        checkpoint = NemoCheckpoint(source)
        for note in checkpoint.notes:
            info(f"note: {note}")
        layers = "stacked" if checkpoint.stacked else "per-layer"
        info(f"reading {checkpoint.args.name} ({checkpoint.dtype}, {layers} layers) from {checkpoint.folder.weights}")
        write_released(checkpoint, output, dtype=cast, overwrite=overwrite, verify=verify)
    else:
        from cosmos_cli.checkpoints import CheckpointLayout
        from cosmos_cli.models.ar.weights import read_state_dict
        from cosmos_cli.nemo.convert import write_nemo
        from cosmos_cli.stages.ar_model import resolve_model_args

        folder = source.parent if source.is_file() else source
        layout = CheckpointLayout(folder.parent, folder.name)
        layout.require(layout.ar_weights, what="AR model weights")
        args = resolve_model_args(folder)
        info(f"reading {args.name} from {layout.ar_weights}")
        state = read_state_dict(layout.ar_weights)
        write_nemo(state, args, output, stacked=not per_layer, dtype=cast, overwrite=overwrite, verify=verify)
    checked = "verified tensor by tensor, " if verify else ""
    info(f"wrote {output} ({checked}{time.perf_counter() - started:.1f} s)")
    stdout.print(str(output), highlight=False, soft_wrap=True)
