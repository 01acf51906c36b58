"""Tiny NeMo 2 checkpoints written the way megatron-core lays them out (spec ``nemo.md`` section 5), for tests.

The spec's tiny architecture has a cross-attention width (24) that is not ``n_kv_heads * head_dim`` (32),
so a ``[2c, c]`` reshape (NVIDIA's importer) would fail on it. Weights are random, norms included.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch

from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.nemo.convert import write_nemo_folder
from cosmos_cli.nemo.mapping import to_nemo

SPEC_V2W = ModelArgs(
    name="nemo-spec-v2w",
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    head_dim=16,
    ffn_hidden_size=96,
    context_dim=24,
    context_len=8,
    fsq_levels=(4, 4, 6),
    latent_shape=(2, 2, 3),
    video_height=32,
    video_width=48,
)
"""128 embedding rows (96 + <bov>, padded to 64), 96 output rows."""
SPEC_BASE = dataclasses.replace(
    SPEC_V2W, name="nemo-spec-base", family="base", cross_attn_every_k_layers=0, abs_pos_emb=False
)
FAMILIES = {"video2world": SPEC_V2W, "base": SPEC_BASE}


def random_state(args: ModelArgs, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Our state dict (no ``model.`` prefix) with every tensor random, norms around 1 but not 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = Transformer(args)
    out = {}
    for key, param in model.state_dict().items():
        value = 0.1 * torch.randn(param.shape, generator=gen)
        out[key] = (value + 1.0 if key.endswith("norm.weight") else value).to(dtype)
    return out


def decoys(nemo_state: dict, n_layers: int) -> dict:
    """What a real save also holds: TE ``_extra_state`` byte items and optimizer states."""
    extra = io.BytesIO()
    torch.save([None], extra)
    out = {}
    for i in range(n_layers):
        item = io.BytesIO(extra.getvalue())
        out[f"module.decoder.layers.self_attention.linear_qkv._extra_state/shard_{i}_{n_layers}"] = item
    for key in list(nemo_state)[:3]:
        out[f"optimizer.state.exp_avg.{key}"] = torch.zeros_like(nemo_state[key], dtype=torch.float32)
        out[f"optimizer.state.fp32_param.{key}"] = nemo_state[key].float()
    return out


def write_fixture(folder: Path, args: ModelArgs, state: dict[str, torch.Tensor], *, stacked: bool = True,
                  with_decoys: bool = True) -> dict[str, torch.Tensor]:  # fmt: skip
    """A NeMo folder for ``state`` (forward mapping, stacked or per layer, decoys); returns its NeMo tensors."""
    nemo_state = to_nemo(state, args, stacked=stacked)
    extra = decoys(nemo_state, args.n_layers) if with_decoys else {}
    write_nemo_folder({**nemo_state, **extra}, args, folder, overwrite=True)
    return nemo_state


def save_model_pt(folder: Path, args: ModelArgs, state: dict[str, torch.Tensor]) -> Path:
    """The released layout of the same weights: ``model.pt`` (``model.`` keys) + ``cosmos_arch.json``."""
    import json

    from cosmos_cli.checkpoints import ARCH_FILE

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model." + k: v for k, v in state.items()}, folder / "model.pt")
    (folder / ARCH_FILE).write_text(json.dumps(args.to_json()))
    return folder / "model.pt"
