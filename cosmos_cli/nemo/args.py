"""The architecture of a NeMo checkpoint folder, for the stages and commands that resolve ``--ar-model-dir``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cosmos_cli.models.config import ModelArgs
from cosmos_cli.nemo.layout import find_nemo


def nemo_model_args(ar_dir: Path) -> ModelArgs | None:
    """``ModelArgs`` of the NeMo checkpoint at ``ar_dir`` (None if it is not one); notes shown once."""
    folder = find_nemo(Path(ar_dir))
    if folder is None:
        return None
    return _args(Path(ar_dir).resolve(), (folder.weights / ".metadata").stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _args(ar_dir: Path, _stamp: int) -> ModelArgs:
    from cosmos_cli.console import warn
    from cosmos_cli.nemo.state import NemoCheckpoint

    checkpoint = NemoCheckpoint(ar_dir)
    for note in checkpoint.notes:
        warn(note)
    return checkpoint.args
