"""Read a checkpoint file sequentially ahead of the memory-mapped loader, at the disk's own rate.

``torch.load(mmap=True)`` reads a file by page faults as tensors are touched: the kernel's readahead window
is small (128 KiB by default) and one thread waits on each fault, so a 14 GB checkpoint on a network volume
loads at a fraction of the disk's sequential rate. :func:`read_ahead` starts one background thread that
reads the file front to back in large blocks (filling the page cache) while the loader copies tensors to the
GPU in file order right behind it. Nothing is kept: the bytes land in the page cache the mmap reads from.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

CHUNK = 64 << 20


@contextlib.contextmanager
def read_ahead(path: Path | None, chunk: int = CHUNK) -> Iterator[None]:
    """Within the block, a thread reads ``path`` sequentially (no-op for None or a missing file)."""
    if path is None or not Path(path).is_file():
        yield
        return
    stop = threading.Event()

    def run() -> None:
        try:
            with open(path, "rb", buffering=0) as f:
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                buffer = memoryview(bytearray(chunk))
                while not stop.is_set() and f.readinto(buffer):
                    pass
        except OSError:
            pass  # only an optimisation: the loader reports real read errors itself

    thread = threading.Thread(target=run, name=f"read-ahead {Path(path).name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (clean pages only), so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
