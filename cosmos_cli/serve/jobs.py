"""Every accepted request as a row in SQLite, with its upload and its result as files beside it.

Layout of the jobs dir::

    jobs.sqlite3            one row per job (WAL journal, synchronous=FULL)
    incoming/<id>/<name>    an upload being received or validated (never a job yet)
    uploads/<id><.suffix>   the accepted input, renamed here before the row is committed
    results/<id>/<id>.mp4   written by the pipeline (atomically), with generation.json

A job exists once its row is committed, and the row is committed only after its upload is complete on disk,
so a crash at any point loses nothing that a client was told was accepted. At start-up :meth:`JobStore.
recover` puts interrupted (``running``) jobs back in the queue, in their original order, and removes what
no row refers to.

Why the standard library's ``sqlite3`` rather than SQLAlchemy: one table, a dozen statements and one
process; what matters is control over transactions (``BEGIN IMMEDIATE`` to claim a batch) and pragmas
(durability), which ``sqlite3`` gives directly, without another dependency or an ORM layer to learn.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

FINISHED = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 3
"""A job that was running when the process died this many times fails instead of being run again: a job
that crashes the server must not crash it forever."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    stage TEXT,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    input_path TEXT NOT NULL,
    decoder TEXT,
    error_code TEXT,
    error_message TEXT,
    timings TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
"""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobParams:
    """What the client asked for (the multipart fields), kept with the job so that a restart can rerun it."""

    prompt: str
    seed: int = 0
    top_p: float | None = None
    temperature: float | None = None
    num_input_frames: int = 9
    num_frames: int = 33
    disable_diffusion_decoder: bool = False
    filename: str = ""


@dataclass
class Job:
    id: str
    status: str
    params: JobParams
    input_path: str
    """Relative to the jobs dir."""
    created_at: str
    stage: str | None = None
    progress_done: int = 0
    progress_total: int = 0
    decoder: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data.pop("seq")
        data["params"] = JobParams(**json.loads(data["params"]))
        data["timings"] = json.loads(data["timings"])
        return cls(**data)


@dataclass(frozen=True)
class Recovery:
    requeued: list[str]
    failed: list[str]
    removed_files: int


class JobFinished(Exception):
    """Cancelling a job that already ended."""

    def __init__(self, job: Job):
        super().__init__(job.status)
        self.job = job


class JobsDir:
    """Where each job's files live (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.db = self.root / "jobs.sqlite3"
        self.incoming = self.root / "incoming"
        self.uploads = self.root / "uploads"
        self.results = self.root / "results"

    def create(self) -> None:
        for folder in (self.incoming, self.uploads, self.results):
            folder.mkdir(parents=True, exist_ok=True)

    def upload_path(self, job_id: str, suffix: str) -> Path:
        return self.uploads / f"{job_id}{suffix}"

    def result_dir(self, job_id: str) -> Path:
        return self.results / job_id

    def video_path(self, job_id: str) -> Path:
        return self.result_dir(job_id) / f"{job_id}.mp4"


class JobStore:
    """Thread-safe access to the jobs table: one connection, one lock (request threads and the worker)."""

    def __init__(self, root: Path):
        self.dirs = JobsDir(root)
        self.dirs.create()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.dirs.db, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an accepted job survives a power cut, not only a crash
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- start-up ------------------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Requeue jobs a previous process left running (or fail them past :data:`MAX_ATTEMPTS`), and
        remove files no job refers to: unfinished uploads, and uploads or results without a row."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE status = 'running'").fetchall()
            requeued = [r["id"] for r in rows if r["attempts"] < MAX_ATTEMPTS]
            failed = [r["id"] for r in rows if r["attempts"] >= MAX_ATTEMPTS]
            db.executemany(
                "UPDATE jobs SET status = 'queued', stage = NULL, progress_done = 0, progress_total = 0 WHERE id = ?",
                [(i,) for i in requeued],
            )
            message = f"the server stopped while running this job {MAX_ATTEMPTS} times; not retried again"
            db.executemany(
                "UPDATE jobs SET status = 'failed', error_code = 'interrupted', error_message = ?, "
                "finished_at = ? WHERE id = ?",
                [(message, utc_now(), i) for i in failed],
            )
            known = {r["id"] for r in db.execute("SELECT id FROM jobs")}
        removed = 0
        for entry in self.dirs.incoming.iterdir():
            _remove(entry)
            removed += 1
        for folder in (self.dirs.uploads, self.dirs.results):
            for entry in folder.iterdir():
                job_id = entry.name.split(".", 1)[0]
                if job_id not in known or (folder is self.dirs.results and job_id in requeued):
                    _remove(entry)
                    removed += 1
        return Recovery(requeued, failed, removed)

    # ---- requests ------------------------------------------------------------------------------
    def add(self, job_id: str, params: JobParams, input_path: Path) -> Job:
        """Record an accepted job; its upload must already be at ``input_path`` (inside the jobs dir)."""
        job = Job(
            id=job_id,
            status="queued",
            params=params,
            input_path=str(Path(input_path).relative_to(self.dirs.root)),
            created_at=utc_now(),
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, status, params, input_path, created_at) VALUES (?, ?, ?, ?, ?)",
                (job.id, job.status, json.dumps(asdict(params)), job.input_path, job.created_at),
            )
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def recent(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """The ``limit`` most recent jobs (optionally only those with one status), oldest first: the queue
        reads in the order it runs, and a long-lived server still lists what is current."""
        where, args = ("WHERE status = ?", [status]) if status is not None else ("", [])
        query = f"SELECT * FROM (SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [Job.from_row(r) for r in rows]

    def cancel(self, job_id: str) -> Job | None:
        """Mark a queued or running job cancelled (the worker notices); None if there is no such job."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = Job.from_row(row)
            if job.status in FINISHED:
                raise JobFinished(job)
            job.status, job.finished_at = "cancelled", utc_now()
            db.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ?", (job.status, job.finished_at, job_id)
            )
        return job

    # ---- the worker ----------------------------------------------------------------------------
    def claim(self, max_jobs: int) -> list[Job]:
        """Take the oldest queued job and up to ``max_jobs - 1`` more queued after it that decode the same
        way (the diffusion-decoder switch is per batch), and mark them running."""
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq").fetchall()
            if not rows:
                return []
            jobs = [Job.from_row(r) for r in rows]
            flag = jobs[0].params.disable_diffusion_decoder
            batch = [j for j in jobs if j.params.disable_diffusion_decoder == flag][:max_jobs]
            now = utc_now()
            db.executemany(
                "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, stage = NULL, "
                "progress_done = 0, progress_total = 0 WHERE id = ?",
                [(now, j.id) for j in batch],
            )
        for job in batch:
            job.status, job.started_at, job.attempts = "running", now, job.attempts + 1
        return batch

    def requeue(self, job_ids: list[str]) -> list[str]:
        """Put running jobs back in the queue, in their place, as if never started: the server is stopping
        gracefully (SIGTERM), which is not a crash, so it does not count towards :data:`MAX_ATTEMPTS`."""
        marks = ",".join("?" * len(job_ids))
        with self._transaction() as db:
            rows = db.execute(f"SELECT id FROM jobs WHERE status = 'running' AND id IN ({marks})", job_ids).fetchall()
            db.execute(
                "UPDATE jobs SET status = 'queued', stage = NULL, progress_done = 0, progress_total = 0, "
                f"started_at = NULL, attempts = MAX(attempts - 1, 0) WHERE status = 'running' AND id IN ({marks})",
                job_ids,
            )
        return [r["id"] for r in rows]

    def progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET stage = ?, progress_done = ?, progress_total = ? WHERE id = ? AND status = 'running'",
                (stage, done, total, job_id),
            )

    def cancelled(self, job_ids: list[str]) -> set[str]:
        marks = ",".join("?" * len(job_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE status = 'cancelled' AND id IN ({marks})", job_ids
            ).fetchall()
        return {r["id"] for r in rows}

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        decoder: str | None = None,
        error: tuple[str, str] | None = None,
        timings: dict[str, float] | None = None,
    ) -> bool:
        """Record how a running job ended; False (and no change) if it is no longer running (cancelled)."""
        code, message = error or (None, None)
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, decoder = ?, error_code = ?, error_message = ?, timings = ?, "
                "finished_at = ? WHERE id = ? AND status = 'running'",
                (status, decoder, code, message, json.dumps(timings or {}), utc_now(), job_id),
            )
        return cursor.rowcount == 1


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
