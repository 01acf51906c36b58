"""All terminal output: one rich Console, rank-0-only printing, progress bars.

Library code reports progress through :func:`progress` and never prints directly; on ranks other than 0
(under torchrun) everything here is silent, so only one process talks to the user.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cosmos_cli import settings

_progress_off = False


def is_rank_zero() -> bool:
    """True on the process that talks to the user (rank 0, or no torchrun at all)."""
    return settings.rank() == 0


def disable_progress() -> None:
    """No progress bars from now on in this process (``serve``: the API reports progress instead)."""
    global _progress_off
    _progress_off = True


def progress_enabled() -> bool:
    """Bars only on rank 0, unless ``COSMOS_CLI_NO_PROGRESS=1`` or :func:`disable_progress`."""
    return is_rank_zero() and not _progress_off and not settings.progress_disabled()


console = Console(stderr=True, quiet=not is_rank_zero())
"""Messages and progress go to stderr so that stdout stays clean for data (JSON, paths)."""

stdout = Console(quiet=not is_rank_zero())


def info(message: str) -> None:
    console.print(message, highlight=False)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


@contextlib.contextmanager
def progress(description: str, total: float | None, unit: str = "") -> Iterator[callable]:
    """A rich progress bar; yields ``advance(n=1)``. Shows a rate when ``unit`` is given (e.g. tokens/s)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    disabled = not progress_enabled()
    with Progress(*columns, console=console, disable=disabled, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: float = 1) -> None:
            bar.advance(task, n)
            if unit:
                speed = bar.tasks[0].speed
                bar.update(task, rate=f"{speed:,.1f} {unit}/s" if speed else "")

        yield advance
