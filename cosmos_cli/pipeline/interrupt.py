"""Ctrl-C and SIGTERM during ``generate``: stop now, clean up, say what is done, exit 130 / 143.

SIGTERM's default action ends the process on the spot, so no ``finally`` runs and the staging folders of
atomic writes (``.NAME.partial-*``) stay behind; click turns Ctrl-C into "Aborted!" and exit 1. Instead:

- One process (:func:`interruptible`): either signal raises :class:`Interrupted` (a ``KeyboardInterrupt``,
  so per-sample error handling lets it through) in the main thread. Every atomic write's ``finally`` removes
  its staging folder (nothing half-written reaches a final name), :meth:`VideoPipeline.run` attaches its
  per-sample results, and this module writes ``summary.json`` (batches) with every sample's status:
  ``succeeded`` / ``skipped`` (done), ``interrupted`` (started, not finished; a long video keeps its saved
  chunks) or ``pending`` (not started), prints one line and exits ``128 + signal``. Further signals are
  ignored until then. A re-run of the same command resumes: finished samples are skipped by their records.
- ``--gpus N`` (:func:`launcher_interruptible`): the launching process is torchrun's agent. The first
  signal makes the agent send the same signal to every worker and wait for them (SIGKILL after its
  timeout); later signals are ignored, so that wait is never cut short and no worker is orphaned. The
  workers stop as one process does but stay quiet (:func:`interruptible` with a ``ctx``); once they are
  gone, the launcher writes the summary from what the sample folders hold and prints the one line. A
  worker that cannot reach Python code (blocked in a collective whose peer already stopped) ends itself
  :data:`STUCK_GRACE_S` after the signal (:func:`_exit_when_stuck`): it holds no open output then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

HANDLED = (signal.SIGINT, signal.SIGTERM)
STUCK_GRACE_S = 10.0
"""Seconds a torchrun worker has, after the signal, to reach Python code before it exits on the spot."""
RESUME = "run the same command again to resume"


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler; ``results`` is set by the pipeline run it stopped (if any)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + self.signum
        self.results: list | None = None


_received: list[int] = []
"""The signal that the active :func:`interrupts_raise` received (at most one)."""


@contextlib.contextmanager
def interrupts_raise(*, watchdog: bool = False) -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` (once) inside the ``with`` body; later ones are ignored.

    Python runs a signal handler wherever the main thread is, and a few places swallow what it raises
    (an at-fork callback while ffmpeg starts, a ``__del__``): :func:`raise_if_interrupted`, which the
    pipeline calls between stages and on every progress event, raises it again there.
    ``watchdog``: also end the process :data:`STUCK_GRACE_S` after the first signal if the body has not
    finished by then (torchrun workers). No-op off the main thread (signals are delivered there only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame) -> None:
        if _received:  # already stopping: let the cleanup finish
            return
        _received.append(signum)
        raise Interrupted(signum)

    _received.clear()
    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_swallowed_interrupts(previous_hook)
    stop_watch = _exit_when_stuck() if watchdog else None
    try:
        yield
    finally:
        if stop_watch is not None:
            stop_watch()
        sys.unraisablehook = previous_hook
        for sig, old in previous.items():
            signal.signal(sig, old)


def _quiet_swallowed_interrupts(previous: Callable) -> Callable:
    """Python prints "Exception ignored in ..." with a traceback when a place that swallows exceptions
    (an at-fork callback, a ``__del__``) swallows our :class:`Interrupted`; it is raised again at the next
    :func:`raise_if_interrupted`, so that print is noise that would break the one-line promise."""

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            return
        previous(unraisable)

    return hook


def raise_if_interrupted(*_event) -> bool:
    """Raise :class:`Interrupted` if a signal came (again, should the first raise have been swallowed);
    else False. Fits both ``should_stop`` and ``on_event`` of :meth:`VideoPipeline.run`."""
    if _received:
        raise Interrupted(_received[0])
    return False


def _exit_when_stuck() -> Callable[[], None]:
    """Watch for SIGINT/SIGTERM from C (``signal.set_wakeup_fd``), which works even while the main thread
    is blocked in a collective and cannot run the Python handler; exit ``128 + signal`` if the main thread
    has not finished :data:`STUCK_GRACE_S` later. Returns the function that stops watching."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    done = threading.Event()

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            signums = [b for b in data if b in {int(s) for s in HANDLED}]
            if not data or done.is_set():
                os.close(read_fd)
                return
            if signums and not done.wait(STUCK_GRACE_S):
                os._exit(128 + signums[0])

    threading.Thread(target=watch, name="cosmos-interrupt-watchdog", daemon=True).start()

    def stop() -> None:
        done.set()
        signal.set_wakeup_fd(old_fd)
        os.close(write_fd)  # the watcher's read returns b"" and it ends

    return stop


# ---- after the stop: what is done, what is not -------------------------------------------------------
def settle(samples: list, output_dir: Path, stop: Interrupted, results: list | None, *, since: float,
           overwrite: bool) -> list:
    """One result per sample, statuses final: the run's own result where it has one (``results``), else
    what the sample's folder says (a launcher's view: its workers' results died with them). A record
    written since ``since`` (epoch seconds) is this run's; an older one is a skipped sample's, unless
    ``--overwrite`` asked to redo it."""
    from cosmos_cli.pipeline.chunk_state import STATE_DIR
    from cosmos_cli.pipeline.pipeline import SampleResult

    by_name = {r.name: r for r in results or []}
    settled = []
    for sample in samples:
        result = by_name.get(sample.name)
        started = result is not None and bool(result.timings or result.chunks)
        if result is None:
            result = SampleResult(sample.name)
            record = sample.finished_record(output_dir)
            fresh = record is not None and _written_since(record, since)
            if fresh or (record is not None and not overwrite):
                result.status = "succeeded" if fresh else "skipped"
                result.video_path = str(sample.video_path(output_dir))
            started = (sample.folder(output_dir) / STATE_DIR).is_dir()  # a long video's saved chunks
        if result.status == "pending":
            result.status = "interrupted" if started else "pending"
            result.error = f"{'interrupted' if started else 'not started'}: stopped by {stop.signal_name}; {RESUME}"
            result.exit_code = stop.exit_code
        settled.append(result)
    return settled


def _written_since(record: dict, since: float) -> bool:
    try:
        return datetime.fromisoformat(record.get("finished_at", "")).timestamp() >= since
    except (TypeError, ValueError):
        return False


def remove_partials(folders: list[Path]) -> int:
    """Remove staging folders (``.*.partial-*``) directly inside ``folders`` that a killed writer left."""
    removed = 0
    for folder in folders:
        folder = Path(folder)
        for entry in folder.glob(".*.partial-*") if folder.is_dir() else ():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def sample_folders(samples: list, output_dir: Path) -> list[Path]:
    """Every folder a run writes into: the output folder, each sample's, and its saved long-video chunks."""
    from cosmos_cli.pipeline.chunk_state import STATE_DIR

    folders = [Path(output_dir)]
    for sample in samples:
        folders += [sample.folder(output_dir), sample.folder(output_dir) / STATE_DIR]
    return folders


def report(stop: Interrupted, results: list, output_dir: Path, write_summary: Callable | None) -> None:
    """Write ``summary.json`` (when ``write_summary`` is given: batches) and print the one line."""
    from cosmos_cli.console import console

    done = sum(r.status in ("succeeded", "skipped") for r in results)
    where = ""
    if write_summary is not None:
        info = {"signal": stop.signal_name, "exit_code": stop.exit_code,
                "at": datetime.now(timezone.utc).isoformat()}  # fmt: skip
        write_summary(Path(output_dir), results, interrupted=info)
        where = f" (summary: {Path(output_dir) / 'summary.json'})"
    line = f"interrupted by {stop.signal_name}: {done} of {len(results)} sample(s) done{where}; {RESUME}"
    console.print(line, highlight=False, soft_wrap=True, markup=False)


# ---- the two places that stop ------------------------------------------------------------------------
@contextlib.contextmanager
def interruptible(request, ctx, write_summary: Callable) -> Iterator[None]:
    """Around one process's (or one torchrun worker's) ``generate`` job: Ctrl-C / SIGTERM end it with
    ``128 + signal`` after the cleanup described in the module docstring."""
    from cosmos_cli import settings

    since = time.time()
    with interrupts_raise(watchdog=ctx is not None):
        try:
            yield
            raise_if_interrupted()  # one that came at a moment that swallowed the exception
        except Interrupted as stop:
            if ctx is not None and settings.launched_by_us():
                raise SystemExit(stop.exit_code) from None  # the launcher reports, once its workers are gone
            samples, output_dir = request.to_samples(), Path(request.output_dir)
            if ctx is None:  # a worker's siblings may still be writing: leave their staging folders alone
                remove_partials(sample_folders(samples, output_dir))
            if ctx is None or ctx.dims.is_main:
                mine = stop.results if ctx is None else None  # under plain torchrun: rank 0 reads the folders
                results = settle(samples, output_dir, stop, mine, since=since, overwrite=request.overwrite)
                report(stop, results, output_dir, write_summary if request.batch_input is not None else None)
            raise SystemExit(stop.exit_code) from None


@contextlib.contextmanager
def launcher_interruptible(request, write_summary: Callable) -> Iterator[None]:
    """Around :func:`cosmos_cli.parallel.launch.relaunch` (this process is torchrun's agent): the first
    SIGINT/SIGTERM goes on to every worker; they stop as one process does and exit ``128 + signal``, the
    agent stops the rest and waits for them; then the summary is written from the sample folders.

    The handler only forwards the signal (it raises nothing that a swallowing moment could lose), and
    torchrun is told not to install its own handlers for these two signals (it raises on every one,
    which could cut its own wait for the workers short and leave them orphaned).
    """
    import psutil

    from cosmos_cli.errors import DistributedError

    since = time.time()
    fired: list[int] = []

    def handler(signum, _frame) -> None:
        if fired:
            return
        fired.append(signum)
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                child.send_signal(signum)

    os.environ[TORCHRUN_SIGNALS_ENV] = "SIGHUP,SIGQUIT"  # torchrun keeps its own handling of the others
    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    try:
        try:
            yield
        except (Interrupted, DistributedError):  # the workers stopped because of the signal
            if not fired:
                raise
        if fired:
            raise Interrupted(fired[0])
    except Interrupted as stop:
        samples, output_dir = request.to_samples(), Path(request.output_dir)
        remove_partials(sample_folders(samples, output_dir))  # a worker killed after the agent's timeout
        results = settle(samples, output_dir, stop, None, since=since, overwrite=request.overwrite)
        report(stop, results, output_dir, write_summary if request.batch_input is not None else None)
        raise SystemExit(stop.exit_code) from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


TORCHRUN_SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"
"""torchrun's own setting (read by its process context at start), not one of ours."""

