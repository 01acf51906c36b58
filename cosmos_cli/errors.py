"""Errors a user can act on.

Every failure the user can fix is a :class:`CosmosError` carrying one line that names the problem and the
fix. ``cli.main`` prints that line (no traceback unless ``--debug``) and exits with ``exit_code``.
Library code raises these; it never prints or calls ``sys.exit`` itself.
"""

from __future__ import annotations

import errno


class CosmosError(Exception):
    """A problem the user can fix; ``str(err)`` is the one line shown to them."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self):
        """Copy and pickle keep message, hint and exit code (results cross processes under torchrun)."""
        return (_rebuild, (type(self), self.message, self.hint, self.exit_code))


def _rebuild(cls: type[CosmosError], message: str, hint: str | None, exit_code: int) -> CosmosError:
    err = CosmosError.__new__(cls)
    CosmosError.__init__(err, message, hint, exit_code)
    return err


class BadInput(CosmosError):
    """An input file or argument that cannot be used as given."""


class ModelNotDownloaded(CosmosError):
    """A checkpoint file the requested stage needs is missing."""


class CheckpointMismatch(CosmosError):
    """A checkpoint file exists but its keys or shapes do not match the architecture."""


class DownloadError(CosmosError):
    """Fetching from the Hugging Face Hub failed (auth, licence, not found, network, disk, checksum)."""


class NotEnoughMemory(CosmosError):
    """The requested placement cannot fit in GPU or host memory."""


class DistributedError(CosmosError):
    """torchrun / process-group misconfiguration, or a failure on another rank."""


class GuardrailBlocked(CosmosError):
    """The guardrail refused a prompt (exit 3) or a generated video (exit 4)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message, exit_code=exit_code)


def describe(exc: BaseException) -> str:
    """The line a log or a record shows for any exception: ours as they read, others with their type."""
    return exc.one_line() if isinstance(exc, CosmosError) else f"{type(exc).__name__}: {exc}"


USER_OS_ERRORS = (errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG)
"""File-system errors about a path the user chose (a file where a folder must be, no permission, a read-only
mount, a name too long): the boundary in ``cli.main`` shows them as one line, exit 2. Others (``ENOENT`` of a
file we expected to exist, I/O errors) stay "unexpected": they may be our bugs."""


def from_os_error(err: OSError) -> CosmosError | None:
    """The one-line :class:`BadInput` for an :class:`OSError` in :data:`USER_OS_ERRORS` naming a path, or None."""
    if err.errno not in USER_OS_ERRORS or not err.filename:
        return None
    return BadInput(f"cannot use {err.filename}: {err.strerror}", "choose another path (see --help)")
