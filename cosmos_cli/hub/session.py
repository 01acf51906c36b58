"""The HTTP session huggingface_hub uses, with a timeout, and partial files that interrupted runs left behind.

huggingface_hub 2.x sends its API calls through one shared ``httpx2.Client`` created with ``timeout=None``:
a hub (or proxy) that accepts the connection and never answers would hang ``download`` forever. We set a
timeout on that shared client (``COSMOS_CLI_HUB_TIMEOUT``, 30 s by default) and map the timeout to one line.

It downloads each file into a process-unique ``<etag>.<random>.incomplete`` file, which it deletes when the
download fails inside Python but which a killed process (SIGKILL, power loss) leaves behind, never reused:
:func:`remove_stale_partials` deletes those before the next run downloads again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import get_session

from cosmos_cli import settings

PARTIAL_SUFFIX = ".incomplete"
STALE_AFTER_S = 60.0
"""A live download writes its partial file every few seconds; one untouched for a minute is abandoned."""


def apply_timeout(seconds: float | None = None) -> float:
    """Give huggingface_hub's shared client a timeout for connecting and for each read; returns it."""
    seconds = settings.hub_timeout_s() if seconds is None else seconds
    get_session().timeout = httpx2.Timeout(seconds)
    return seconds


def remove_stale_partials(folders: list[Path], older_than_s: float = STALE_AFTER_S) -> int:
    """Delete ``*.incomplete`` files under ``folders`` untouched for ``older_than_s``; returns bytes freed."""
    freed, now = 0, time.time()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.rglob(f"*{PARTIAL_SUFFIX}"):
            try:
                stat = path.stat()
                if path.is_file() and now - stat.st_mtime > older_than_s:
                    path.unlink()
                    freed += stat.st_size
            except OSError:
                continue  # gone meanwhile, or not ours to delete
    return freed


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while downloading, so huggingface_hub removes its partial file."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
