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


# ---- `generate --backend nemo` (NVIDIA's NeMo script; docs/nemo.md) ----------------------------------
ENV_COSMOS_REPO = "COSMOS_REPO_DIR"
"""The NVIDIA Cosmos checkout whose NeMo script ``--backend nemo`` runs (default: the current folder)."""
ENV_HF_HOME = "HF_HOME"
NVTE_ATTENTION_VARS = ("NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN")
"""Transformer Engine's attention switches, which megatron-core checks against the model's backend."""


def cosmos_repo_dir(flag: Path | None = None) -> Path:
    """``--cosmos-repo``, else ``$COSMOS_REPO_DIR``, else the current folder (NVIDIA runs from the repo root)."""
    if flag is not None:
        return Path(flag)
    return Path(os.environ.get(ENV_COSMOS_REPO) or ".")


def hf_home() -> str | None:
    """``$HF_HOME`` where set (and non-empty), else None."""
    return os.environ.get(ENV_HF_HOME) or None


def nvte_attention_env() -> dict[str, str]:
    """The ``NVTE_*`` attention variables that are set in this environment."""
    return {name: os.environ[name] for name in NVTE_ATTENTION_VARS if name in os.environ}


def child_environ() -> dict[str, str]:
    """A copy of this process's environment, for a child process that gets a few variables more."""
    return dict(os.environ)
