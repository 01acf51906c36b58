"""Read the diffusion decoder's ``model.pt`` into :class:`DiffusionDecoderDiT`.

The released file is the state dict of NVIDIA's ``ModuleDict(net, conditioner, logvar)``: network keys
carry a ``net.`` prefix and ``logvar.*`` holds the training-only uncertainty head. Golden sets store the
network alone, without the prefix. We strip the prefix, drop ``logvar.*`` and TransformerEngine's
``_extra_state`` entries (the reference's loader skips both), accept the RoPE tables that some versions
of the reference save (they are recomputed, never learned), and require every other key to match in name
and shape: a mismatch raises :class:`CheckpointMismatch` naming the first offending keys.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cosmos_cli.errors import CheckpointMismatch
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT
from cosmos_cli.models.state_dict import check_state_dict as check_strict

NET_PREFIX = "net."
_DERIVED = ("pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range")
_SEQ = "pos_embedder.seq"


def network_state_dict(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Network weights only, without the ``net.`` prefix (a no-op on golden-set files)."""
    prefixed = any(k.startswith(NET_PREFIX) for k in raw)
    out = {}
    for key, value in raw.items():
        if key.startswith("logvar.") or key.endswith("_extra_state"):
            continue
        if prefixed:
            if not key.startswith(NET_PREFIX):
                continue  # conditioner.* etc.: no tensors at inference
            key = key[len(NET_PREFIX) :]
        if key in _DERIVED:
            continue
        out[key] = value
    return out


def check_state_dict(net: DiffusionDecoderDiT, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a one-line :class:`CheckpointMismatch` unless ``state`` fits ``net`` exactly."""
    hint = "the file does not belong to this diffusion decoder; re-download it or fix its cosmos_arch.json"
    check_strict(
        net, state, source, what="does not match the diffusion decoder", hint=hint, may_lack=lambda key: key == _SEQ
    )


def _torch_load(path: Path) -> object:
    """Memory-mapped when the file allows it (zip format), so 14 GB are never read twice."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        raw = _torch_load(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user problem
        raise CheckpointMismatch(
            f"cannot read {path} as a PyTorch checkpoint ({type(err).__name__})",
            "delete it and download the diffusion decoder again",
        ) from err
    if not isinstance(raw, dict):
        raise CheckpointMismatch(f"{path} holds a {type(raw).__name__}, not a state dict", "re-download it")
    return raw


def load_network(
    net: DiffusionDecoderDiT, raw: dict[str, torch.Tensor], source: str = "model.pt", assign: bool = False
) -> None:
    """Load a (possibly ``net.``-prefixed) checkpoint into ``net``; ``assign`` for meta-device models."""
    state = network_state_dict(raw)
    check_state_dict(net, state, source)
    if _SEQ not in state:
        state[_SEQ] = torch.arange(net.pos_embedder.seq.numel(), dtype=torch.float32)
    net.load_state_dict(state, strict=True, assign=assign)
