"""huggingface_hub's typed errors -> one :class:`~cosmos_cli.errors.DownloadError` line with the next action.

An ordered table, like huggingface_hub's own ``cli/_errors.py``: the first row whose type (and predicate)
fits wins, so subclasses (``GatedRepoError`` is a ``RepositoryNotFoundError``) come before their parents.
Anything not in the table is re-raised unchanged: an unknown failure should show its traceback, not be
disguised as a network problem.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from cosmos_cli import settings
from cosmos_cli.errors import DownloadError


@dataclass(frozen=True)
class HubContext:
    """What was being fetched when an error happened; every message names it."""

    endpoint: str
    repo_id: str
    revision: str
    file: str | None = None
    token_sent: bool = False
    gated: bool = False
    """A repo known to be gated: its "not found" 401 means "no token", not a wrong name."""

    @property
    def what(self) -> str:
        return f"{self.repo_id}/{self.file}" if self.file else self.repo_id


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _gated_401(err: BaseException, ctx: HubContext) -> DownloadError:
    if ctx.token_sent:
        return DownloadError(
            f"{ctx.repo_id} refused the Hugging Face token (401)",
            f"check HF_TOKEN / --token; create a read token at {ctx.endpoint}/settings/tokens",
        )
    return DownloadError(
        f"{ctx.repo_id} is gated and no Hugging Face token was sent (401)",
        f"create a read token at {ctx.endpoint}/settings/tokens, then export HF_TOKEN=hf_... or pass --token",
    )


def _gated_403(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"licence not accepted for {ctx.repo_id} (403)",
        f"open {ctx.endpoint}/{ctx.repo_id}, accept the licence with the account of your token, then rerun",
    )


def _repo_not_found(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"repository {ctx.repo_id} not found on {ctx.endpoint} ({_status(err) or 404})",
        "check the repo id and HF_ENDPOINT; a private repo also needs HF_TOKEN",
    )


def _revision_not_found(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"revision {ctx.revision!r} not found in {ctx.repo_id} (404)",
        "check --revision: a branch, tag or commit of that repo",
    )


def _entry_not_found(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"{ctx.file or 'a file'} not found in {ctx.repo_id} at revision {ctx.revision!r} (404)",
        "check --include/--revision, or rerun: the repo may have changed during the download",
    )


def _disabled(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(f"repository {ctx.repo_id} is disabled on the hub", "nothing can be downloaded from it")


def _offline(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError("HF_HUB_OFFLINE is set, so nothing can be downloaded", "unset HF_HUB_OFFLINE and rerun")


def _unreachable(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"cannot reach the Hugging Face Hub at {ctx.endpoint} while fetching {ctx.what}",
        "check the network, HTTPS_PROXY and HF_ENDPOINT, then rerun: finished files are kept",
    )


def _timed_out(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"{ctx.endpoint} accepted the connection but did not answer within {settings.hub_timeout_s():g} s "
        f"while fetching {ctx.what}",
        f"check the network, HTTPS_PROXY and HF_ENDPOINT, or raise {settings.ENV_HUB_TIMEOUT}; finished files are kept",
    )


def _html(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"{ctx.endpoint} answered with a web page, not the Hugging Face Hub API, for {ctx.what}",
        "check HF_ENDPOINT (it must be the hub's base URL, e.g. https://huggingface.co), or unset it",
    )


def _is_not_json(err: BaseException, ctx: HubContext) -> bool:
    return isinstance(err, ValueError) and not isinstance(err, UnicodeError)


def _not_a_hub(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"{ctx.endpoint} did not answer like a Hugging Face Hub for {ctx.what}",
        "check HF_ENDPOINT, or unset it to use https://huggingface.co",
    )


def _server_error(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"the hub answered {_status(err)} for {ctx.what}", "retry later: finished files are kept and skipped"
    )


def _rate_limited(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(f"the hub rate-limited the download of {ctx.what} (429)", "wait a few minutes, then rerun")


def _disk_full(err: BaseException, ctx: HubContext) -> DownloadError:
    where = getattr(err, "filename", None) or "the checkpoint folder"
    return DownloadError(
        f"disk full while downloading {ctx.what} into {where}",
        "free space or pass --checkpoint-dir on a larger disk, then rerun: finished files are kept",
    )


def _incomplete(err: BaseException, ctx: HubContext) -> DownloadError:
    return DownloadError(
        f"the download of {ctx.what} ended early: the connection kept dropping", "rerun to fetch it again"
    )


Applies = Callable[[BaseException, HubContext], bool]
Row = tuple[type[BaseException], Applies, Callable[[BaseException, HubContext], DownloadError]]


def _any(err: BaseException, ctx: HubContext) -> bool:
    return True


def _status_is(*codes: int) -> Applies:
    return lambda err, ctx: _status(err) in codes


def _is_gated_401(err: BaseException, ctx: HubContext) -> bool:
    return ctx.gated and _status(err) == 401


def _is_server_error(err: BaseException, ctx: HubContext) -> bool:
    return (_status(err) or 0) >= 500


def _is_remote_entry(err: BaseException, ctx: HubContext) -> bool:
    return not isinstance(err, LocalEntryNotFoundError)


def _is_disk_full(err: BaseException, ctx: HubContext) -> bool:
    return getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


def _is_incomplete(err: BaseException, ctx: HubContext) -> bool:
    return "Consistency check failed" in str(err)


ERROR_TABLE: list[Row] = [
    (GatedRepoError, _status_is(403), _gated_403),
    (GatedRepoError, _any, _gated_401),
    (RevisionNotFoundError, _any, _revision_not_found),
    (DisabledRepoError, _any, _disabled),
    (RepositoryNotFoundError, _is_gated_401, _gated_401),
    (RepositoryNotFoundError, _any, _repo_not_found),
    (EntryNotFoundError, _is_remote_entry, _entry_not_found),
    (OfflineModeIsEnabled, _any, _offline),
    (FileMetadataError, _any, _not_a_hub),
    (HfHubHTTPError, _status_is(401), _gated_401),
    (HfHubHTTPError, _status_is(403), _gated_403),
    (HfHubHTTPError, _status_is(429), _rate_limited),
    (HfHubHTTPError, _is_server_error, _server_error),
    (httpx2.TimeoutException, _any, _timed_out),
    (httpx2.TransportError, _any, _unreachable),
    (json.JSONDecodeError, _is_not_json, _html),
    (LocalEntryNotFoundError, _any, _unreachable),
    (OSError, _is_disk_full, _disk_full),
    (OSError, _is_incomplete, _incomplete),
]


def _causes(err: BaseException | None) -> list[BaseException]:
    """The error and the chain it was raised ``from`` (huggingface_hub wraps the real cause this way)."""
    chain: list[BaseException] = []
    while err is not None and all(err is not seen for seen in chain):
        chain.append(err)
        err = err.__cause__
    return chain


def to_download_error(err: BaseException, ctx: HubContext) -> DownloadError | None:
    """The one-line error for ``err``, or None when it is not a known case.

    The deepest known cause wins: a ``LocalEntryNotFoundError`` ("cannot find the file locally") says less
    than the 500, the refused connection or the full disk it was raised from.
    """
    for candidate in reversed(_causes(err)):
        for kind, applies, build in ERROR_TABLE:
            if isinstance(candidate, kind) and applies(candidate, ctx):
                return build(candidate, ctx)
    return None
