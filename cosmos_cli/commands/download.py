"""`cosmos-cli download`: fetch the checkpoints a preset needs into NVIDIA's checkpoints/ tree.

A thin verb: options -> :func:`cosmos_cli.hub.download.make_plan` -> either a table (``--dry-run``) or
:func:`~cosmos_cli.hub.download.execute` with rich progress bars. The hub and its errors are handled in
``cosmos_cli.hub``; huggingface_hub is imported only when the verb runs, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cosmos_cli.commands.options import DEFAULT_CHECKPOINT, CheckpointDirOpt, DebugOpt

if TYPE_CHECKING:
    from cosmos_cli.hub.download import Plan


def human(n: float) -> str:
    """Decimal units, as the hub shows sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


class RichReporter:
    """Two bars on stderr: the current file (download or verification) and the total bytes to download."""

    def __init__(self, total_bytes: int):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from cosmos_cli.console import console, progress_enabled

        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=24),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not progress_enabled(),
        )
        self.total = self.progress.add_task("total", total=total_bytes, visible=total_bytes > 0)
        self.file = self.progress.add_task("", total=None, visible=False)
        self.counts = False

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, label: str, size: int, counts: bool) -> None:
        verb = "get" if counts else "verify"
        label = label if len(label) <= 44 else "…" + label[-43:]
        self.progress.reset(self.file, total=size, completed=0, description=f"{verb} {label}", visible=True)
        self.counts = counts

    def advance(self, n: int) -> None:
        self.progress.advance(self.file, n)
        if self.counts:
            self.progress.advance(self.total, n)


def print_plan(plan: Plan) -> None:
    """The ``--dry-run`` report on stdout: per repo its files, sizes and state; then totals and free disk."""
    from rich.table import Table

    from cosmos_cli.console import stdout

    states = {"present": "present", "check": "on disk, unverified", "download": "download"}
    for rp in plan.repos:
        stdout.print(
            f"[bold]{rp.repo.repo_id}[/bold] @ {rp.revision} ({rp.commit[:10]}): {rp.repo.purpose}\n"
            f"  -> {rp.local_root}" + ("  (Hugging Face cache layout)" if rp.repo.layout == "hf-cache" else ""),
            highlight=False,
            soft_wrap=True,
        )
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2))
        table.add_column("file")
        table.add_column("size", justify="right")
        table.add_column("state")
        for f in rp.files:
            table.add_row(f"  {f.path}", human(f.size), states[f.status])
        stdout.print(table)
        stdout.print()
    stdout.print(
        f"total: {human(plan.total_bytes)} in {len(plan.files)} files; "
        f"to download: {human(plan.download_bytes)}; free disk at {plan.root}: {human(plan.free_bytes())}",
        highlight=False,
        soft_wrap=True,
    )


def command(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Presets: 5b-video2world (default), 4b, 12b, 13b-video2world.", show_default=False),
    ] = None,
    checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT,
    no_diffusion_decoder: Annotated[
        bool,
        typer.Option("--no-diffusion-decoder", help="Skip the 7B diffusion decoder and its CV8x8x8 tokenizer."),
    ] = False,
    no_guardrail: Annotated[
        bool,
        typer.Option(
            "--no-guardrail",
            help="Skip the guardrail models (blocklist, face blur, SigLIP, LlamaGuard/Aegis).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List files, sizes and free disk space; write nothing.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="Hugging Face token (default: HF_TOKEN, then the token saved by `hf auth login`)."
        ),
    ] = None,
    revision: Annotated[
        list[str] | None,
        typer.Option("--revision", help="Pin a branch/tag/commit: REV for every repo, or REPO_ID=REV (repeatable)."),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Also fetch repo files matching this glob, e.g. 'nemo/*'."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip repo files matching this glob, e.g. '*.jit'.")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash files already recorded as verified in the manifest.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Download checkpoints from the Hugging Face Hub into NVIDIA's checkpoints/ layout, verified by sha256.

    Honours HF_TOKEN, HF_ENDPOINT and HF_HOME. Interrupted? Rerun: finished files are skipped.
    """
    from cosmos_cli.console import info, warn
    from cosmos_cli.hub.download import execute, make_plan, parse_revisions
    from cosmos_cli.hub.manifest import check_patterns, repos_for

    include, exclude = include or [], exclude or []
    check_patterns(include, "--include")
    check_patterns(exclude, "--exclude")
    repos = repos_for(models or [], diffusion_decoder=not no_diffusion_decoder, guardrail=not no_guardrail)
    root = Path(checkpoint_dir)
    plan = make_plan(
        root, repos, revisions=parse_revisions(revision or []), include=include, exclude=exclude, token=token
    )
    for pattern in plan.unmatched_patterns:
        warn(f"pattern {pattern!r} matched no file in the selected repos")
    if dry_run:
        print_plan(plan)
        for problem in plan.access_problems:
            warn(problem.one_line())
        return
    if plan.download_bytes == 0 and not verify and all(f.status == "present" for f in plan.files):
        info(
            f"All {len(plan.files)} files ({human(plan.total_bytes)}) are present and verified in {root}: "
            "nothing to do."
        )
        return
    with RichReporter(plan.download_bytes) as reporter:
        result = execute(plan, reporter, reverify=verify)
    parts = [f"downloaded {len(result.downloaded)} files ({human(sum(f.size for f in result.downloaded))})"]
    if result.adopted:
        parts.append(f"verified {len(result.adopted)} already on disk")
    if result.present:
        parts.append(f"{len(result.present)} were present")
    if result.partial_bytes_removed:
        parts.append(f"removed {human(result.partial_bytes_removed)} of partial files left by an interrupted run")
    info(f"{', '.join(parts)}; manifest: {result.manifest}")
