"""Ctrl-C and SIGTERM during ``generate``: stop now, clean up, say what is done, exit 130 / 143.

SIGTERM's default action ends the process on the spot, so no ``finally`` runs and the staging folders of
atomic writes (``.NAME.partial-*``) stay behind; click turns Ctrl-C into "Aborted!" and exit 1. While
:func:`interrupts_raise` is active, either signal raises :class:`Interrupted` (a ``KeyboardInterrupt``,
so per-sample error handling lets it through) in the main thread: every atomic write's ``finally`` removes
its staging folder, :meth:`VideoPipeline.run` attaches what it had finished, and the command writes
``summary.json`` and exits ``128 + signal``. Further signals are ignored while that cleanup runs.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler; ``results`` is set by the pipeline run it stopped (if any)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.results: list | None = None


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` (once) inside the ``with`` body; no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, _frame) -> None:
        if fired:  # already stopping: let the cleanup finish
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def remove_partials(folders: list[Path]) -> int:
    """Remove staging folders (``.*.partial-*``) directly inside ``folders``, should any have survived."""
    removed = 0
    for folder in folders:
        for entry in Path(folder).glob(".*.partial-*") if Path(folder).is_dir() else ():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def report_interrupted(stop: Interrupted, samples: list, output_dir: Path, write_summary=None) -> None:
    """After :class:`Interrupted`: remove leftover partials, write the summary (``write_summary(output_dir,
    results)``, batches only) with every sample not finished marked ``interrupted``, print one line."""
    from cosmos_cli.console import console

    output_dir = Path(output_dir)
    remove_partials([output_dir, *(s.folder(output_dir) for s in samples)])
    results = stop.results or []
    for result in results:
        if result.status == "pending":
            result.status = "interrupted"
            result.error = f"interrupted by {stop.signal_name} before it finished (run the same command to resume)"
            result.exit_code = stop.exit_code
    done = sum(r.status in ("succeeded", "skipped") for r in results)
    where = ""
    if write_summary is not None and stop.results is not None:
        write_summary(output_dir, results)
        where = f"; summary in {output_dir / 'summary.json'}"
    what = f": {done} of {len(samples)} sample(s) done{where}" if stop.results is not None else ""
    line = f"interrupted by {stop.signal_name}{what}; run the same command again to resume"
    console.print(line, highlight=False, soft_wrap=True, markup=False)
