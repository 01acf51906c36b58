"""A rank that raises ends the whole job with one line naming it and a non-zero exit (2 CPU ranks, gloo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = "tests/dist_scripts/fail_rank.py"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def test_relaunch_reports_the_failing_rank_in_one_line():
    """The ``--gpus 2`` path: rank 1 raises a user error while rank 0 waits in an all-reduce."""
    run = _run(sys.executable, SCRIPT, "1", "user")
    assert run.returncode == 2  # the user error's exit code, not torchrun's 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: rank 1 failed: sample 3 has 5 input frames (use 1 or 9 frames)"
    )
    assert run.stderr.count("rank 1") == 1  # one line, from the launcher only
    assert "Traceback" not in run.stderr and "ChildFailedError" not in run.stderr
    assert run.stdout == ""


def test_plain_torchrun_names_the_rank_too():
    """``torchrun ... -m cosmos_cli``: torchrun prints its summary; the failing rank adds one clear line."""
    run = _run(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT, "1", "bug"
    )
    assert run.returncode != 0
    assert "error: rank 1 failed: RuntimeError: boom in the decoder" in run.stderr.splitlines()
    # torchrun's root-cause section reads our record (error_file), so it shows the message too.
    root_cause = run.stderr.split("Root Cause")[1]
    assert re.search(r"rank\s*:\s*1\b", root_cause) and "boom in the decoder" in root_cause


def test_relaunch_rank0_bug_is_one_line_without_worker_tracebacks():
    run = _run(sys.executable, SCRIPT, "0", "bug")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr  # neither the failing rank nor rank 1 (connection closed) prints one
    assert run.stderr.strip().splitlines()[-1] == (
        "error: rank 0 failed: RuntimeError: boom in the decoder "
        "(the other ranks were stopped; --debug shows its traceback)"
    )
