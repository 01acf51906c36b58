"""Load released AR checkpoints as they are: ``model.pt`` (or safetensors) with NVIDIA's key names.

``torch.load(mmap=True, weights_only=True)``, optional ``{"model": ...}`` wrapper, ``model.`` prefix and
TransformerEngine ``_extra_state`` entries handled like the reference (spec 1.7), then a strict key and
shape check that names the first offending keys. Also random weights at the real shape (``dummy``)
for benchmarks, without touching disk.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from cosmos_cli.errors import BadInput, CheckpointMismatch
from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.models.state_dict import check_state_dict as check_strict

PREFIX = "model."


def read_state_dict(path: Path, *, lazy: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` with the reference's clean-up applied.

    A NeMo checkpoint folder is read and inverse-mapped by ``cosmos_cli.nemo``; with ``lazy`` its values
    are read when sliced (tensor-parallel ranks read only their shards).
    """
    path = Path(path)
    if path.is_dir():
        from cosmos_cli.nemo.state import NemoCheckpoint

        return NemoCheckpoint(path).state_dict(lazy=lazy)
    if not path.is_file():
        raise BadInput(f"checkpoint not found: {path}", "check --checkpoint-dir / --ar-model-dir")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointMismatch(
            f"cannot read checkpoint {path}: {str(err).splitlines()[0][:200]}",
            "the file is truncated or not a PyTorch checkpoint; download it again with `cosmos-cli download`",
        ) from err
    if isinstance(raw, dict) and "model" in raw and isinstance(raw["model"], dict):
        raw = raw["model"]
    if not isinstance(raw, dict):
        raise CheckpointMismatch(f"{path} does not hold a state dict", "expected NVIDIA's model.pt")
    clean = {}
    for key, value in raw.items():
        if "_extra_state" in key:
            continue
        clean[key[len(PREFIX) :] if key.startswith(PREFIX) else key] = value
    return clean


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict key and shape comparison with a readable error listing the first mismatches."""
    name = getattr(model, "args", None) and model.args.name
    check_strict(
        model,
        state,
        source,
        what=f"does not match the {name} architecture",
        hint="check that --ar-model-dir names the right model size",
    )


def build_model(args: ModelArgs, *, weights: Path | None, dtype: torch.dtype, device: torch.device) -> Transformer:
    """Build the transformer on ``device`` in ``dtype`` from a checkpoint, or random weights if None.

    The module is created on the meta device so that no memory is spent on an initialisation that the
    checkpoint overwrites; tensors are then assigned from the mmap'd file and moved once.
    """
    with torch.device("meta"):
        model = Transformer(args)
    if weights is None:
        model.to_empty(device=device)
        _random_init(model, dtype)
    else:
        state = read_state_dict(weights)
        check_state_dict(model, state, str(weights))
        model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


@torch.no_grad()
def _random_init(model: nn.Module, dtype: torch.dtype) -> None:
    """Random weights at the real shape (``--load-format dummy``): norms 1, matrices N(0, 0.02)."""
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        else:
            param.normal_(0.0, 0.02)
    model.to(dtype)


def random_state_dict(args: ModelArgs, seed: int = 0) -> dict[str, torch.Tensor]:
    """A complete state dict with the released key names (``model.`` prefix), for tiny test checkpoints."""
    torch.manual_seed(seed)
    model = Transformer(args)
    _random_init(model, torch.float32)
    return {PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}
