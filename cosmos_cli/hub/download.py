"""Plan and run a checkpoint download with huggingface_hub, verify every file, and record what is on disk.

Two steps, so that ``--dry-run`` and the real run share one code path:

* :func:`make_plan` asks the hub for each repo's file list with sizes and hashes (one ``model_info`` call
  per repo), picks the files the presets need, and compares them with what is already on disk;
* :func:`execute` checks disk space, downloads what is missing with ``hf_hub_download`` (which resumes a
  dropped connection with HTTP ranges, handles redirects, xet and tokens), verifies each file against the
  hub's sha256 (LFS) or git blob id (small files) by streaming it, and records it in the manifest file.

Nothing here prints: progress goes to a :class:`Reporter` that the command renders.

The library does the network work (listing, HEAD, ranged downloads, tokens, xet). Three of its higher-level
helpers were tried against ``tests/hub_server.py`` with huggingface_hub 2.4.0 and do not fit:

* ``snapshot_download(..., allow_patterns=..., dry_run=True)`` sends one ``HEAD`` per file after a
  ``repo_info`` and a tree listing (5 HEADs for 5 files, where the plan sends one ``model_info`` per repo and
  one ``HEAD`` per gated repo); it writes in a dry run (``refs/main`` under a ``cache_dir``, which is inside
  the checkpoint root for SigLIP and LlamaGuard; ``.cache/huggingface/*.lock`` and ``*.metadata`` under a
  ``local_dir``, hashing files it finds there); without a token it raises ``GatedRepoError`` for the whole repo,
  so a dry run could not list the gated repo's sizes; and ``allow_patterns`` cannot say "safetensors if
  published, else .bin" (:class:`~cosmos_cli.hub.manifest.Pick`), which needs the listing first anyway.
* ``snapshot_download`` for the download itself runs ``hf_hub_download`` in worker threads even with
  ``max_workers=1``: Ctrl-C or SIGTERM then waits for the running file to finish instead of stopping it and
  removing its partial file, and per-file progress labels are lost.
* ``HfApi.verify_repo_checksums`` hashes every local file that the hub lists (no file selection): files the
  manifest already vouches for, and whatever else is in the folder (NVIDIA's script leaves T5's ~90 GB of
  TensorFlow/Flax weights there, which it would hash too); it reports nothing while it hashes (tens of GB with
  no progress); it gives no sha256 for small files, which the manifest records; and it lists the tree again.
  :func:`file_digests` reads each chosen file once, with progress, and yields both digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from huggingface_hub import HfApi, constants, get_hf_file_metadata, get_token, hf_hub_download, hf_hub_url
from tqdm.auto import tqdm

from cosmos_cli import settings
from cosmos_cli.errors import DownloadError
from cosmos_cli.guardrail.layout import hub_cache_folder
from cosmos_cli.hub.errors import HubContext, to_download_error
from cosmos_cli.hub.manifest import RepoSpec, matches, select
from cosmos_cli.hub.session import apply_timeout, remove_stale_partials, sigterm_as_interrupt

MANIFEST_NAME = "cosmos-cli-manifest.json"
"""At the checkpoint root: one entry per verified file (repo, revision, commit, file, size, sha256)."""
HASH_CHUNK = 16 * 2**20

Status = Literal["present", "check", "download"]
"""present: recorded in the manifest, unchanged; check: right size, not verified yet; download: fetch it."""


class Reporter(Protocol):
    """Where progress goes: ``counts`` is True while downloading, False while verifying (the total bar
    counts network bytes only)."""

    def start(self, label: str, size: int, counts: bool) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass
class PlannedFile:
    repo: RepoSpec
    path: str
    """Path inside the repo."""
    size: int
    sha256: str | None
    """The hub's LFS sha256 (large files); None for small files stored in git."""
    git_oid: str | None
    """The hub's git blob id; verifies small files, identifies large ones."""
    dest: Path
    status: Status = "download"

    @property
    def label(self) -> str:
        """Short name for progress bars: repo name without the organisation, then the path."""
        return f"{self.repo.repo_id.rsplit('/', 1)[-1]}/{self.path}"


@dataclass
class RepoPlan:
    repo: RepoSpec
    revision: str
    commit: str
    files: list[PlannedFile]
    local_root: Path
    """The folder hf_hub_download writes to: the files themselves ("dir") or a cache_dir ("hf-cache")."""


@dataclass
class Plan:
    root: Path
    endpoint: str
    token: str | None
    repos: list[RepoPlan]
    access_problems: list[DownloadError] = field(default_factory=list)
    unmatched_patterns: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[PlannedFile]:
        return [f for rp in self.repos for f in rp.files]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def download_bytes(self) -> int:
        return sum(f.size for f in self.files if f.status == "download")

    def free_bytes(self) -> int:
        return shutil.disk_usage(_existing_parent(self.root)).free


@dataclass
class Result:
    downloaded: list[PlannedFile]
    adopted: list[PlannedFile]
    """Files that were already on disk without a manifest entry and matched the hub's hashes."""
    present: list[PlannedFile]
    manifest: Path
    partial_bytes_removed: int = 0
    """Bytes of ``.incomplete`` files that killed runs had left in the target folders, deleted first."""


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as set now (huggingface_hub reads it once, at import), else the library's default."""
    return (settings.hf_endpoint() or constants.ENDPOINT).rstrip("/")


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


T = TypeVar("T")


def _hub_call(ctx: HubContext, call: Callable[[], T]) -> T:
    """Run one huggingface_hub call; known failures become one-line DownloadErrors, others propagate."""
    try:
        return call()
    except DownloadError:
        raise
    except Exception as err:
        mapped = to_download_error(err, ctx)
        if mapped is None:
            raise
        raise mapped from err


# ---- the manifest file --------------------------------------------------------------------------------


class Manifest:
    """The JSON record of verified files, keyed by path under the checkpoint root; saved atomically."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST_NAME
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.entries = {e["path"]: e for e in data.get("files", [])}
            except (ValueError, KeyError, TypeError):
                self.entries = {}  # unreadable: every file is re-verified by hash, nothing is lost

    def key(self, pf: PlannedFile) -> str:
        return pf.dest.relative_to(self.root).as_posix()

    def is_current(self, pf: PlannedFile) -> bool:
        """Recorded for this content, and the file on disk has not changed since (size and mtime)."""
        entry = self.entries.get(self.key(pf))
        if entry is None or entry.get("size") != pf.size:
            return False
        same = entry.get("sha256") == pf.sha256 if pf.sha256 else entry.get("git_oid") == pf.git_oid
        stat = pf.dest.stat()
        return same and stat.st_size == pf.size and entry.get("mtime_ns") == stat.st_mtime_ns

    def record(self, pf: PlannedFile, rp: RepoPlan, sha256: str) -> None:
        self.entries[self.key(pf)] = {
            "repo": pf.repo.repo_id,
            "revision": rp.revision,
            "commit": rp.commit,
            "file": pf.path,
            "path": self.key(pf),
            "size": pf.size,
            "sha256": sha256,
            "git_oid": pf.git_oid,
            "mtime_ns": pf.dest.stat().st_mtime_ns,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        files = sorted(self.entries.values(), key=lambda e: (e["repo"], e["file"]))
        tmp.write_text(json.dumps({"version": 1, "files": files}, indent=1) + "\n")
        os.replace(tmp, self.path)


# ---- planning --------------------------------------------------------------------------------


def _revision_for(repo: RepoSpec, revisions: dict[str, str]) -> str:
    return revisions.get(repo.repo_id) or revisions.get("*") or constants.DEFAULT_REVISION


def _local_root(root: Path, repo: RepoSpec) -> Path:
    return root / repo.dest


def _dest(root: Path, repo: RepoSpec, commit: str, path: str) -> Path:
    if repo.layout == "dir":
        return _local_root(root, repo) / path
    storage = hub_cache_folder(_local_root(root, repo), repo.repo_id)
    return storage / "snapshots" / commit / path


def _status(pf: PlannedFile, manifest: Manifest) -> Status:
    if not pf.dest.is_file() or pf.dest.stat().st_size != pf.size:
        return "download"
    return "present" if manifest.is_current(pf) else "check"


def make_plan(
    root: Path,
    repos: list[RepoSpec],
    *,
    revisions: dict[str, str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Plan:
    """Ask the hub what each repo holds at its revision and decide, file by file, what must be fetched.

    ``revisions`` maps a repo id (or ``"*"`` for all) to a branch, tag or commit. ``include`` adds files
    matching extra globs from the same repos; ``exclude`` drops matching files (both on repo-relative paths).
    """
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    timeout = apply_timeout()
    revisions, include, exclude = revisions or {}, include or [], exclude or []
    token_sent = bool(token or get_token())
    api = HfApi(endpoint=endpoint, token=token)
    manifest = Manifest(root)
    plan = Plan(root=root, endpoint=endpoint, token=token, repos=[])
    used_patterns: set[str] = set()
    for repo in repos:
        revision = _revision_for(repo, revisions)
        ctx = HubContext(endpoint, repo.repo_id, revision, token_sent=token_sent, gated=repo.gated)
        info = _hub_call(
            ctx, partial(api.model_info, repo.repo_id, revision=revision, files_metadata=True, timeout=timeout)
        )
        siblings = {s.rfilename: s for s in info.siblings or []}
        selection = select(repo, list(siblings))
        if selection.missing_required:
            raise DownloadError(
                f"{selection.missing_required[0]} not found in {repo.repo_id} at revision {revision!r} (404)",
                "the repo layout may have changed: pin an older --revision, or report it",
            )
        extra = [f for f in siblings if any(matches(f, p) for p in include)]
        used_patterns.update(p for p in include if any(matches(f, p) for f in siblings))
        wanted = set(selection.files) | set(extra)
        chosen = [f for f in siblings if f in wanted]
        dropped = {f for f in chosen if any(matches(f, p) for p in exclude)}
        used_patterns.update(p for p in exclude if any(matches(f, p) for f in chosen))
        files = []
        for name in chosen:
            if name in dropped:
                continue
            sib = siblings[name]
            pf = PlannedFile(
                repo=repo,
                path=name,
                size=sib.lfs.size if sib.lfs else (sib.size or 0),
                sha256=sib.lfs.sha256 if sib.lfs else None,
                git_oid=sib.blob_id,
                dest=_dest(root, repo, info.sha, name),
            )
            pf.status = _status(pf, manifest)
            files.append(pf)
        plan.repos.append(RepoPlan(repo, revision, info.sha, files, local_root=_local_root(root, repo)))
        if repo.gated and any(f.status == "download" for f in files):
            problem = _access_problem(repo, info.sha, files, ctx, endpoint, token)
            if problem is not None:
                plan.access_problems.append(problem)
    plan.unmatched_patterns = [p for p in include + exclude if p not in used_patterns]
    return plan


def _access_problem(
    repo: RepoSpec, commit: str, files: list[PlannedFile], ctx: HubContext, endpoint: str, token: str | None
) -> DownloadError | None:
    """HEAD one file of a gated repo, so that a missing token or licence fails before hours of downloads."""
    probe = next(f for f in files if f.status == "download")
    url = hf_hub_url(repo.repo_id, probe.path, revision=commit, endpoint=endpoint)
    try:
        _hub_call(
            ctx, partial(get_hf_file_metadata, url, token=token, endpoint=endpoint, timeout=settings.hub_timeout_s())
        )
    except DownloadError as problem:
        return problem
    return None


# ---- running --------------------------------------------------------------------------------


def _tqdm_forwarding_to(advance: Callable[[int], None]) -> type[tqdm]:
    """A silent tqdm class for ``hf_hub_download(tqdm_class=...)`` that feeds our Reporter instead.

    ``update_transfer`` is defined so that xet downloads report through ``update`` once, not twice.
    """

    class _Forward(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": True})

        def update(self, n=1):
            if n:
                advance(int(n))
            return super().update(n)

        def update_transfer(self, n=1):
            pass

        def set_transfer_postfix_str(self, *args, **kwargs):
            pass

    return _Forward


def _nop(n: int) -> None:
    pass


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(min(HASH_CHUNK, max(size, 1))):
            yield chunk


def file_digests(path: Path, size: int, git: bool, advance: Callable[[int], None] = _nop) -> tuple[str, str]:
    """sha256 and (if ``git``) the git blob sha1 of a file, reading it once in 16 MiB chunks."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if git else None
    for chunk in _chunks(path, size):
        sha256.update(chunk)
        if sha1 is not None:
            sha1.update(chunk)
        advance(len(chunk))
    return sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else ""


def _verify(pf: PlannedFile, path: Path, reporter: Reporter | None) -> tuple[bool, str]:
    if reporter is not None:
        reporter.start(pf.label, pf.size, counts=False)
    sha256, sha1 = file_digests(path, pf.size, git=pf.sha256 is None, advance=reporter.advance if reporter else _nop)
    ok = sha256 == pf.sha256 if pf.sha256 else sha1 == pf.git_oid
    return ok, sha256


def _remove(path: Path, rp: RepoPlan) -> None:
    """Delete a bad file; in the cache layout also the blob its snapshot link points to.

    A link that leads outside the repo's own folder (say, a user's link to NVIDIA's checkout) is removed,
    never its target.
    """
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path.absolute() and target.is_relative_to(rp.local_root.resolve()):
        target.unlink(missing_ok=True)


def _fetch(pf: PlannedFile, rp: RepoPlan, plan: Plan, reporter: Reporter | None) -> Path:
    if reporter is not None:
        reporter.start(pf.label, pf.size, counts=True)
    where = {"local_dir": rp.local_root} if pf.repo.layout == "dir" else {"cache_dir": rp.local_root}
    token_sent = bool(plan.token or get_token())
    ctx = HubContext(plan.endpoint, pf.repo.repo_id, rp.revision, pf.path, token_sent, pf.repo.gated)
    path = _hub_call(
        ctx,
        lambda: hf_hub_download(
            pf.repo.repo_id,
            pf.path,
            revision=rp.commit,
            token=plan.token,
            endpoint=plan.endpoint,
            etag_timeout=settings.hub_timeout_s(),
            tqdm_class=_tqdm_forwarding_to(reporter.advance if reporter else _nop),
            **where,
        ),
    )
    return Path(path)


def _write_ref(rp: RepoPlan) -> None:
    """Point ``refs/<branch>`` at the commit, as hf_hub_download does for a branch name, so that NVIDIA's
    ``from_pretrained(repo_id, cache_dir=...)`` resolves "main" without network access."""
    if rp.repo.layout != "hf-cache" or rp.revision == rp.commit:
        return
    ref = hub_cache_folder(rp.local_root, rp.repo.repo_id) / "refs" / rp.revision
    if ref.is_file() and ref.read_text() == rp.commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.tmp")
    tmp.write_text(rp.commit)
    os.replace(tmp, ref)


def check_disk_space(plan: Plan) -> None:
    need, free = plan.download_bytes, plan.free_bytes()
    if need > free:
        raise DownloadError(
            f"not enough disk space in {_existing_parent(plan.root)}: {need / 1e9:.1f} GB to download, "
            f"{free / 1e9:.1f} GB free",
            "free space or pass --checkpoint-dir on a larger disk",
        )


def execute(plan: Plan, reporter: Reporter | None = None, reverify: bool = False) -> Result:
    """Download, verify and record every planned file that is not already present and verified.

    A file whose hashes do not match is deleted and named in the error; finished files stay recorded, so
    a rerun continues where this one stopped.
    """
    if plan.access_problems:
        raise plan.access_problems[0]
    freed = remove_stale_partials([rp.local_root for rp in plan.repos])
    check_disk_space(plan)
    manifest = Manifest(plan.root)
    result = Result([], [], [], manifest.path, partial_bytes_removed=freed)
    with sigterm_as_interrupt():
        _execute(plan, manifest, result, reporter, reverify)
    return result


def _execute(plan: Plan, manifest: Manifest, result: Result, reporter: Reporter | None, reverify: bool) -> None:
    for rp in plan.repos:
        for pf in rp.files:
            if pf.status == "present" and not reverify:
                result.present.append(pf)
                continue
            if pf.status != "download":
                ok, sha256 = _verify(pf, pf.dest, reporter)
                if ok:
                    manifest.record(pf, rp, sha256)
                    manifest.save()
                    (result.present if pf.status == "present" else result.adopted).append(pf)
                    continue
            if pf.dest.is_symlink() or pf.dest.exists():
                # Else hf_hub_download may hand back the stale file that its own metadata vouches for.
                _remove(pf.dest, rp)
            path = _fetch(pf, rp, plan, reporter)
            ok, sha256 = _verify(pf, path, reporter)
            if not ok:
                _remove(path, rp)
                expected = pf.sha256 or pf.git_oid
                raise DownloadError(
                    f"checksum mismatch for {pf.repo.repo_id}/{pf.path}: expected {expected}, got "
                    f"{sha256 if pf.sha256 else 'another git blob id'}; deleted {path}",
                    "rerun to download it again; if it repeats, check the proxy or HF_ENDPOINT",
                )
            manifest.record(pf, rp, sha256)
            manifest.save()
            result.downloaded.append(pf)
        _write_ref(rp)


def parse_revisions(values: list[str]) -> dict[str, str]:
    """``--revision REV`` pins every repo; ``--revision REPO_ID=REV`` pins one (repeatable)."""
    pins: dict[str, str] = {}
    for value in values:
        repo, sep, rev = value.rpartition("=")
        pins[repo if sep else "*"] = rev
    return pins
