"""Checks on Hugging Face ``from_pretrained`` results for the guardrail models."""

from __future__ import annotations

from pathlib import Path

from cosmos_cli.errors import CheckpointMismatch


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
