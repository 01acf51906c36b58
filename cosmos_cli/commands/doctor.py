"""`cosmos-cli doctor`: one table of what this machine has for running Cosmos, and whether `generate` can.

The checkpoint rows ask what ``generate`` with the same ``--checkpoint-dir``, ``--ar-model-dir`` and
``--guardrail`` would read (the same layout and guardrail checks it runs), so "doctor passes" means
"generate finds every file". Exit status: 0 when everything ``generate`` needs is there, 2 (like
``generate`` itself for a missing file) when something required is missing; CUDA, the diffusion decoder
and disk space are reported but never fail it (the CPU and the DV decoder still work).
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from cosmos_cli.checkpoints import DEFAULT_AR_MODEL_DIR, T5_DIR, CheckpointLayout, hub_cache_dir
from cosmos_cli.commands.options import (
    DEFAULT_CHECKPOINT,
    ArModelDirOpt,
    CheckpointDirOpt,
    DebugOpt,
    Guardrail,
    GuardrailOpt,
)
from cosmos_cli.errors import CosmosError, ModelNotDownloaded


@dataclass(frozen=True)
class Finding:
    """One row: what was checked, what was found, whether it is fine, whether ``generate`` needs it."""

    check: str
    finding: str
    ok: bool
    required: bool = False


def collect(checkpoint_dir: Path, ar_model_dir: str = DEFAULT_AR_MODEL_DIR, guardrail: str = "full") -> list[Finding]:
    """Return the rows; no printing, so tests and other verbs can reuse it."""
    rows = [Finding("python", platform.python_version(), True)]
    rows += _runtime()
    rows += checkpoint_findings(Path(checkpoint_dir), ar_model_dir, guardrail)
    where = Path(checkpoint_dir) if Path(checkpoint_dir).exists() else Path.cwd()
    usage = shutil.disk_usage(where)
    rows.append(Finding("disk free", f"{usage.free / 2**30:.1f} GiB", usage.free > 50 * 2**30))
    return rows


def _runtime() -> list[Finding]:
    rows = []
    try:
        import torch

        rows.append(Finding("torch", torch.__version__, True, required=True))
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                name = torch.cuda.get_device_name(i)
                rows.append(Finding(f"cuda:{i}", f"{name}, {free / 2**30:.1f} / {total / 2**30:.1f} GiB free", True))
        else:
            rows.append(Finding("cuda", "not available (CPU only: tiny models and --plan work)", False))
    except ImportError as err:  # pragma: no cover - torch is a dependency
        rows.append(Finding("torch", f"not importable: {err}", False, required=True))
    try:
        import imageio_ffmpeg

        rows.append(Finding("ffmpeg", imageio_ffmpeg.get_ffmpeg_exe(), True, required=True))
    except Exception as err:  # noqa: BLE001 - report whatever went wrong
        rows.append(Finding("ffmpeg", f"missing: {err}", False, required=True))
    return rows


def checkpoint_findings(root: Path, ar_model_dir: str, guardrail: str) -> list[Finding]:
    """What ``generate`` would read under ``root``: AR model, DV tokenizer, T5 (models that take a prompt),
    the diffusion decoder (optional) and the guardrail (unless ``off``)."""
    from cosmos_cli.guardrail import check_guardrail_available
    from cosmos_cli.stages.ar_model import resolve_model_args

    layout = CheckpointLayout(root, ar_model_dir)
    rows = []
    takes_prompt = True  # unknown architecture: assume T5 is needed (the 5B/13B Video2World models)
    try:
        weights = layout.ar_weights
        args = resolve_model_args(layout.ar_dir)
        takes_prompt = bool(args.cross_attn_every_k_layers)
        rows.append(Finding("AR model", f"{weights} ({args.name})" if weights.exists() else f"{weights} missing",
                            weights.exists(), required=True))  # fmt: skip
    except CosmosError as err:
        rows.append(Finding("AR model", err.one_line(), False, required=True))
    dv = [p for p in (layout.dv_encoder, layout.dv_decoder) if not p.exists()]
    rows.append(Finding("DV8x16x16 tokenizer", f"{dv[0]} missing" if dv else str(layout.dv_decoder.parent), not dv,
                        required=True))  # fmt: skip
    if takes_prompt:
        rows.append(_t5_finding(layout))
    else:
        rows.append(Finding("T5 text encoder", "not used (base model: no prompt)", True))
    dd_files = (layout.dd_dir / "model.pt", layout.cv_dir / "decoder.jit", layout.cv_dir / "mean_std.pt")
    dd_missing = [p for p in dd_files if not p.exists()]
    rows.append(Finding(
        "diffusion decoder",
        f"{dd_missing[0]} missing (optional: the DV8x16x16 tokenizer decodes)" if dd_missing else str(dd_files[0]),
        not dd_missing,
    ))  # fmt: skip
    if guardrail == "off":
        rows.append(Finding("guardrail", "off (--guardrail off)", True))
    else:
        try:
            check_guardrail_available(guardrail, layout.guardrail_dir)
            rows.append(Finding("guardrail", f"{layout.guardrail_dir} ({guardrail})", True, required=True))
        except CosmosError as err:
            rows.append(Finding("guardrail", err.one_line(), False, required=True))
    return rows


def _t5_finding(layout: CheckpointLayout) -> Finding:
    from cosmos_cli.stages.text_encoder import TOKENIZER_FILES, WEIGHT_FILES

    try:
        folder = layout.t5_dir
    except CosmosError as err:  # NVIDIA's cache with several snapshots and no ref, ...
        return Finding("T5 text encoder", err.one_line(), False, required=True)
    if not (folder / "config.json").is_file():
        missing = folder / "config.json"
    elif not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing = folder / WEIGHT_FILES[2]
    elif not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing = folder / TOKENIZER_FILES[0]
    else:
        missing = None
    if missing is not None:
        return Finding("T5 text encoder", f"{missing} missing", False, required=True)
    cache = hub_cache_dir(layout.root, T5_DIR)
    where = f" (Hugging Face hub cache, snapshot {folder.name[:12]})" if folder.is_relative_to(cache) else ""
    return Finding("T5 text encoder", f"{folder}{where}", True, required=True)


def command(
    checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT,
    ar_model_dir: ArModelDirOpt = DEFAULT_AR_MODEL_DIR,
    guardrail: GuardrailOpt = Guardrail.full,
    debug: DebugOpt = False,
) -> None:
    """Report Python, torch, CUDA, GPU memory, ffmpeg and the checkpoint files `generate` would read.

    Exits 2 when something `generate` needs (with the same --checkpoint-dir, --ar-model-dir and
    --guardrail) is missing, 0 otherwise.
    """
    from rich.table import Table

    from cosmos_cli.console import stdout

    table = Table(title="cosmos-cli doctor")
    table.add_column("check")
    table.add_column("finding", overflow="fold")
    table.add_column("ok")
    rows = collect(checkpoint_dir, ar_model_dir, guardrail.value)
    for row in rows:
        mark = "[green]yes[/green]" if row.ok else ("[red]MISSING[/red]" if row.required else "[yellow]no[/yellow]")
        table.add_row(row.check, row.finding, mark)
    stdout.print(table)
    missing = [row.check for row in rows if row.required and not row.ok]
    if missing:
        raise ModelNotDownloaded(
            f"generate cannot run: {', '.join(missing)} missing or unusable (see the table)",
            f"run: cosmos-cli download --checkpoint-dir {checkpoint_dir}",
        )
