"""Shared fixtures: where ``shared/`` is (next to the repo, as in CI), skipping clearly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COSMOS_SHARED_DIR", REPO.parent / "shared"))

os.environ.setdefault("COSMOS_CLI_NO_PROGRESS", "1")
# Tiny models on a 2-core machine: one intra-op thread avoids OpenMP spin contention between the test
# process and the CLI subprocesses it starts (a tiny matmul takes ~10 us instead of ~6 ms under contention).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A complete tiny checkpoint tree in NVIDIA's layout (written once per test session)."""
    from scripts.make_tiny_checkpoints import make_tiny_checkpoints

    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny-checkpoints"))


TINY_AR_DIR = "Cosmos-1.0-Autoregressive-Tiny-Video2World"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared/ folder next to the repo holds the golden sets and clips")
    return path


@pytest.fixture
def golden_dir() -> Path:
    return shared_path("golden")
