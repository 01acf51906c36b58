"""Shared fixtures: where ``shared/`` is (next to the repo, as in CI), skipping clearly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COSMOS_SHARED_DIR", REPO.parent / "shared"))

os.environ.setdefault("COSMOS_CLI_NO_PROGRESS", "1")


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared/ folder next to the repo holds the golden sets and clips")
    return path


@pytest.fixture
def golden_dir() -> Path:
    return shared_path("golden")
