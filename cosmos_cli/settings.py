"""Environment variables and default locations, read in one place."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CHECKPOINT_DIR = "COSMOS_CHECKPOINT_DIR"
ENV_DEBUG = "COSMOS_CLI_DEBUG"

DEFAULT_CHECKPOINT_DIR = Path("checkpoints")


def default_checkpoint_dir() -> Path:
    return Path(os.environ.get(ENV_CHECKPOINT_DIR, str(DEFAULT_CHECKPOINT_DIR)))


def debug_from_env() -> bool:
    return os.environ.get(ENV_DEBUG, "").lower() in {"1", "true", "yes"}
