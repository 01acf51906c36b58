"""Atomic writes: an output either appears whole under its final name, or not at all.

Every file or folder cosmos-cli produces is first built under a private staging folder next to the target
(same filesystem, so the final ``os.replace`` is a rename, not a copy) and renamed into place only when the
writer finished without error. A crash, a bad input discovered halfway or Ctrl-C leaves no half-written
output under the user's name; the staging folder is removed on every exit path but SIGKILL. A full disk
(``ENOSPC``/``EDQUOT`` while writing) is the user's to fix: :class:`BadInput` "disk full at PATH", exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cosmos_cli.errors import BadInput

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path) -> BadInput:
    return BadInput(f"disk full at {path}", "free some space there, or write to another folder (--output-dir)")


def nearly_full(folder: Path, margin: int = 2**20) -> bool:
    """Less than ``margin`` bytes left for us in ``folder``'s filesystem: why a writer that reports no errno
    (ffmpeg behind a pipe) most likely failed."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < margin


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise :class:`BadInput` if ``path`` exists and the user did not ask to replace it.

    Called before expensive work too, so that a long decode or generation is not wasted on an output the
    user forgot to move.
    """
    if not overwrite and (path.exists() or path.is_symlink()):
        raise BadInput(f"{path} already exists", "pass --overwrite to replace it, or choose another output")


def _staging_dir(parent: Path, name: str, flag: str = "output location") -> tuple[Path, list[Path]]:
    """Create the private staging folder in ``parent``, creating ``parent`` if needed.

    Returns the staging folder and the folders created for it (deepest first), so that a failed write
    can remove them again. Creating the folder doubles as the writability check. It fails the same way
    a real write would, also for root, for whom permission bits alone say nothing.
    """
    blocker = next((p for p in [parent, *parent.parents] if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise BadInput(
            f"cannot write to the output folder {parent}: {blocker} is a file, not a folder",
            f"choose another {flag}, or move that file away",
        )
    created = [p for p in [parent, *parent.parents] if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)), created
    except OSError as err:
        _remove_empty(created)
        if err.errno in NO_SPACE:
            raise disk_full(parent) from err
        reason = err.strerror or str(err)
        if err.errno in (errno.ENOENT, errno.EPERM, errno.EACCES, errno.EROFS) and blocker is not None:
            reason = f"no folder can be made in {blocker} ({reason})"  # e.g. /proc, /sys, a read-only mount
        raise BadInput(f"cannot write to the output folder {parent}: {reason}", f"choose a writable {flag}") from err


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders we created (deepest first) unless something else has been put in them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail now, before any expensive work, if :func:`atomic_path` would refuse or fail to write ``path``.

    Leaves no trace: the staging folder and any parent folders made for it are removed again.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    staging, created = _staging_dir(path.parent, path.name)
    staging.rmdir()
    _remove_empty(created)


def check_writable_folder(folder: Path, flag: str = "--output-dir") -> None:
    """Fail now, before any model loads, if files cannot be created in ``folder`` (made when missing):
    a file on its path, ``/proc``, a read-only mount. ``flag`` names the option in the hint. Leaves no trace."""
    staging, created = _staging_dir(Path(folder), "probe", flag)
    staging.rmdir()
    _remove_empty(created)


def _commit(temp: Path, target: Path, staging: Path) -> None:
    """Move ``temp`` onto ``target``. A file replacing a file is one atomic rename; anything involving a
    folder first moves the old target aside (into the staging folder, deleted afterwards), because
    ``os.replace`` cannot replace a non-empty folder."""
    both_files = temp.is_file() and not target.is_dir()
    if not both_files and (target.exists() or target.is_symlink()):
        os.replace(target, staging / ".replaced")
    os.replace(temp, target)


@contextlib.contextmanager
def atomic_path(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; rename it onto ``path`` on success.

    The yielded path does not exist yet and has the same name (so the same suffix, which ffmpeg and numpy
    use to pick a format) inside a hidden staging folder next to ``path``; the caller creates a file *or* a
    folder there. Missing parent folders are created. An existing ``path`` is refused unless ``overwrite``.
    On any exception the staging folder (and any parent folder made for it) is deleted and the exception
    propagates; ``path`` is untouched.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    staging, created = _staging_dir(path.parent, path.name)
    temp = staging / path.name
    committed = False
    try:
        yield temp
        if not (temp.exists() or temp.is_symlink()):
            raise RuntimeError(f"the writer produced nothing at {temp}")
        refuse_existing(path, overwrite)  # something else may have created it meanwhile
        _commit(temp, path, staging)
        committed = True
    except OSError as err:
        if err.errno in NO_SPACE:
            raise disk_full(path) from err
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not committed:
            _remove_empty(created)
