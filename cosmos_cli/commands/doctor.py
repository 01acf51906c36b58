"""`cosmos-cli doctor`: one table of what this machine has for running Cosmos."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.commands.options import DEFAULT_CHECKPOINT, CheckpointDirOpt, DebugOpt


def collect(checkpoint_dir: Path) -> list[tuple[str, str, bool]]:
    """Return (check, finding, ok) rows; no printing, so tests and other verbs can reuse it."""
    rows: list[tuple[str, str, bool]] = [("python", platform.python_version(), True)]
    try:
        import torch

        rows.append(("torch", torch.__version__, True))
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                name = torch.cuda.get_device_name(i)
                rows.append((f"cuda:{i}", f"{name}, {free / 2**30:.1f} / {total / 2**30:.1f} GiB free", True))
        else:
            rows.append(("cuda", "not available (CPU only: tiny models and --plan work)", False))
    except ImportError as err:  # pragma: no cover - torch is a dependency
        rows.append(("torch", f"not importable: {err}", False))
    try:
        import imageio_ffmpeg

        rows.append(("ffmpeg", imageio_ffmpeg.get_ffmpeg_exe(), True))
    except Exception as err:  # noqa: BLE001 - report whatever went wrong
        rows.append(("ffmpeg", f"missing: {err}", False))
    layout = CheckpointLayout(checkpoint_dir)
    for label, path in [
        ("AR model", layout.ar_weights),
        ("DV8x16x16 tokenizer", layout.dv_decoder),
        ("T5 text encoder", layout.t5_dir / "config.json"),
        ("diffusion decoder", layout.dd_dir / "model.pt"),
        ("guardrail", layout.guardrail_dir),
    ]:
        rows.append((label, str(path), path.exists()))
    usage = shutil.disk_usage(checkpoint_dir if checkpoint_dir.exists() else Path.cwd())
    rows.append(("disk free", f"{usage.free / 2**30:.1f} GiB", usage.free > 50 * 2**30))
    return rows


def command(checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT, debug: DebugOpt = False) -> None:
    """Report Python, torch, CUDA, GPU memory, ffmpeg and checkpoint presence in one table."""
    from rich.table import Table

    from cosmos_cli.console import stdout

    table = Table(title="cosmos-cli doctor")
    table.add_column("check")
    table.add_column("finding")
    table.add_column("ok")
    for check, finding, ok in collect(checkpoint_dir):
        table.add_row(check, finding, "[green]yes[/green]" if ok else "[yellow]no[/yellow]")
    stdout.print(table)
