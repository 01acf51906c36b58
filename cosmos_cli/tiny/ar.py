"""Write a tiny AR checkpoint in the released format (``model.pt`` with NVIDIA's key names)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cosmos_cli.checkpoints import ARCH_FILE
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import random_state_dict
from cosmos_cli.models.config import ModelArgs

TINY_AR_DIR = "Cosmos-1.0-Autoregressive-Tiny-Video2World"


def write_tiny_ar(root: Path, args: ModelArgs = TINY_V2W, dir_name: str = TINY_AR_DIR, seed: int = 0) -> Path:
    """``root/<dir_name>/model.pt`` (``model.`` prefixed keys, as released) plus its ``cosmos_arch.json``."""
    folder = Path(root) / dir_name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(args, seed=seed), folder / "model.pt")
    (folder / ARCH_FILE).write_text(json.dumps(args.to_json(), indent=2))
    return folder
