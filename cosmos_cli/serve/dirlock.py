"""One server per jobs folder: an exclusive ``flock`` on ``<jobs-dir>/server.lock``, held for the server's life.

Two servers on one folder would each take the other's running job for an interrupted one (requeue it, run
it twice) and delete results that the other's database row does not know. The kernel drops the lock when
the holder exits, however it exits (SIGKILL and OOM included), so a crash never leaves a stale lock; the
file keeps the holder's pid and host only so that the refusal can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from cosmos_cli.errors import BadInput

LOCK_FILE = "server.lock"


class JobsDirLock:
    """``with JobsDirLock(root):`` holds the folder; a second holder gets :class:`BadInput` naming the first."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise BadInput(
                f"cannot use the jobs dir {self.root}: {err.strerror or err}", "pass a writable --jobs-dir"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BadInput(f"cannot lock the jobs dir {self.root}: {err.strerror}", "use a local folder") from err
            raise BadInput(
                f"the jobs dir {self.root} is in use by another server ({holder or 'holder unknown'})",
                "stop that server, or pass another --jobs-dir",
            ) from None
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (removing it would race a new holder)
            self._fd = None

    def __enter__(self) -> JobsDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""
