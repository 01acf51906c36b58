"""Loading Hugging Face models from the guardrail folder quietly, strictly and offline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from cosmos_cli.errors import CheckpointMismatch


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars: the CLI owns the terminal (``console.py``)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def require_all_weights(loading_info: dict, source: Path, what: str) -> None:
    """Refuse a checkpoint that left weights at their random init (``from_pretrained`` only warns)."""
    missing = list(loading_info.get("missing_keys") or [])
    mismatched = list(loading_info.get("mismatched_keys") or [])
    if missing or mismatched:
        first = (missing + [m[0] if isinstance(m, (tuple, list)) else m for m in mismatched])[0]
        raise CheckpointMismatch(
            f"{what} checkpoint {source} does not match its architecture ({first} missing or mis-shaped)",
            "re-run: cosmos-cli download 5b-video2world",
        )
