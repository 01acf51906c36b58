"""Recognise a NeMo 2 checkpoint folder by its files, and refuse the formats we cannot read with one line.

Accepted: a post-training output ``.../checkpoints/epoch=E-step=S`` (``weights/`` + ``context/``), its
``weights/`` subfolder, or the Hugging Face repo's ``nemo/`` subfolder; a folder without ``weights/``
that holds the torch_dist files itself is its own weights folder (NeMo's ``ckpt_to_weights_subdir``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cosmos_cli.errors import CheckpointMismatch

DCP_METADATA = ".metadata"
BACKEND_FILE = "metadata.json"
CONTEXT = "context"
MODEL_YAML = "model.yaml"
TORCH_DIST = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
              "common_backend": "torch", "common_backend_version": 1}  # fmt: skip
"""``weights/metadata.json`` as megatron-core writes it for the default format."""


@dataclass(frozen=True)
class NemoFolder:
    """A NeMo checkpoint: ``root`` (which may hold ``context/``) and the torch_dist ``weights`` folder."""

    root: Path
    weights: Path

    @property
    def model_yaml(self) -> Path:
        return self.root / CONTEXT / MODEL_YAML


def _is_weights(folder: Path) -> bool:
    return (folder / DCP_METADATA).is_file() or (folder / BACKEND_FILE).is_file()


def find_nemo(path: Path) -> NemoFolder | None:
    """The NeMo checkpoint at ``path`` (root or ``weights/``), or None when ``path`` is not one."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "weights").is_dir() and _is_weights(path / "weights"):
        folder = NemoFolder(path, path / "weights")
    elif _is_weights(path):
        root = path.parent if path.name == "weights" and (path.parent / CONTEXT).is_dir() else path
        folder = NemoFolder(root, path)
    else:
        return None
    check_backend(folder.weights)
    return folder


def check_backend(weights: Path) -> None:
    """Refuse ``zarr`` (deprecated; megatron-core 0.16 cannot read it either) and anything but torch_dist."""
    meta = weights / BACKEND_FILE
    if meta.is_file():
        try:
            backend = json.loads(meta.read_text()).get("sharded_backend")
        except (ValueError, AttributeError) as err:
            raise CheckpointMismatch(f"{meta} is not valid JSON", "the NeMo checkpoint is corrupt") from err
        if backend != "torch_dist":
            raise CheckpointMismatch(
                f"{weights} is a {backend!r} NeMo checkpoint; only the torch_dist format can be read",
                "re-save it with NeMo's default dist_ckpt_format='torch_dist'",
            )
    if not (weights / DCP_METADATA).is_file():
        raise CheckpointMismatch(f"{weights / DCP_METADATA} is missing", "the NeMo checkpoint is incomplete")
