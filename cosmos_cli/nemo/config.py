"""Our :class:`ModelArgs` from a NeMo checkpoint's ``context/model.yaml`` and its tensor shapes, and back.

``model.yaml`` is NeMo's dump of the model object; its ``config`` section has mcore's names
(``num_layers``, ``num_query_groups``, ``crossattn_emb_size``, ...). A field that is missing is taken
from the tensor shapes (or, for the few that shapes cannot tell, the matching released preset) and the
user is told which. What NeMo does not store (tokenizer vocabulary, latent grid, video size, sampling
defaults) comes from the released preset with the same transformer shape, or from a ``cosmos_arch.json``
in the folder (which our ``convert-checkpoint --to nemo`` writes, for non-released sizes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from cosmos_cli.checkpoints import ARCH_FILE
from cosmos_cli.errors import CheckpointMismatch
from cosmos_cli.models.config import PRESETS, ModelArgs, YarnArgs

YAML_FIELDS = {
    "num_layers": "n_layers",
    "hidden_size": "dim",
    "ffn_hidden_size": "ffn_hidden_size",
    "num_attention_heads": "n_heads",
    "num_query_groups": "n_kv_heads",
    "kv_channels": "head_dim",
    "crossattn_emb_size": "context_dim",
    "qk_layernorm": "qk_norm",
    "layernorm_epsilon": "norm_eps",
    "rotary_base": "rope_theta",
}
"""mcore config field -> ours. The last two cannot be seen in the shapes."""
SHAPE_FIELDS = ("n_layers", "dim", "ffn_hidden_size", "n_heads", "n_kv_heads", "head_dim", "context_dim", "qk_norm")
MODEL_TARGETS = {
    "video2world": "cosmos1.models.autoregressive.nemo.cosmos_video2world.CosmosVideo2WorldModel",
    "base": "cosmos1.models.autoregressive.nemo.cosmos.CosmosModel",
}


def read_model_yaml(path: Path) -> dict | None:
    """The ``config`` section of ``context/model.yaml`` (None when the file is absent)."""
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CheckpointMismatch(f"{path} is not valid YAML: {str(err).splitlines()[0]}",
                                 "the NeMo checkpoint is corrupt") from err  # fmt: skip
    config = data.get("config") if isinstance(data, dict) else None
    return config if isinstance(config, dict) else {}


def shape_fields(shapes: dict[tuple[str, int | None], tuple[int, ...]]) -> dict:
    """What the tensor shapes say of the transformer (``shapes``: (NeMo name, layer) -> per-layer shape)."""

    def get(name: str, layer: int | None = 0):
        return shapes.get((name, layer))

    emb, proj, qkv = (
        get("embedding.word_embeddings.weight", None),
        get("self_attention.linear_proj.weight"),
        get("self_attention.linear_qkv.weight"),
    )
    fc2, qn, kv = (
        get("mlp.linear_fc2.weight"),
        get("self_attention.q_layernorm.weight"),
        get("cross_attention.linear_kv.weight"),
    )
    if emb is None or proj is None or qkv is None or fc2 is None:
        named = (("embedding", emb), ("linear_proj", proj), ("linear_qkv", qkv), ("fc2", fc2))
        missing = [n for n, s in named if s is None]
        raise CheckpointMismatch(f"the NeMo checkpoint has no {', '.join(missing)} weights",
                                 "is this a Cosmos AR model checkpoint?")  # fmt: skip
    out = {
        "n_layers": 1 + max(layer for _, layer in shapes if layer is not None),
        "dim": emb[1],
        "ffn_hidden_size": fc2[1],
        "qk_norm": qn is not None,
        "cross": any(name.startswith(("cross_attention.", "pre_cross_attn_layernorm.")) for name, _ in shapes),
        "proj_cols": proj[1],
        "qkv_rows": qkv[0],
    }
    if qn is not None:
        hn = qn[0]
        out["head_dim"] = hn
        out["n_heads"] = proj[1] // hn
        out["n_kv_heads"] = (qkv[0] // hn - out["n_heads"]) // 2
    if kv is not None:
        out["context_dim"] = kv[1]
    return out


def infer_args(config: dict | None, shapes: dict, folder: Path) -> tuple[ModelArgs, list[str]]:
    """``ModelArgs`` for the checkpoint and the notes to show (fields not in ``model.yaml``)."""
    seen = shape_fields(shapes)
    cross = seen["cross"]
    stated = {ours: config[theirs] for theirs, ours in YAML_FIELDS.items() if config and config.get(theirs) is not None}
    if not cross:
        stated.pop("context_dim", None)
    values = {}
    for field in SHAPE_FIELDS:
        if field == "context_dim" and not cross:
            continue
        if field in stated and field in seen and stated[field] != seen[field]:
            raise CheckpointMismatch(
                f"context/model.yaml says {field}={stated[field]} but the tensors have {seen[field]}",
                "the checkpoint's weights and context/ do not belong together",
            )
        if field in stated:
            values[field] = stated[field]
        elif field in seen:
            values[field] = seen[field]
    if "head_dim" not in values:  # no q/k norms and no kv_channels: mcore's default hidden / heads
        if "n_heads" not in values:
            raise CheckpointMismatch("cannot tell the head size: no q/k norms and no num_attention_heads",
                                     "add kv_channels and num_attention_heads to context/model.yaml")  # fmt: skip
        values["head_dim"] = seen["proj_cols"] // values["n_heads"]
    values.setdefault("n_heads", seen["proj_cols"] // values["head_dim"])
    values.setdefault("n_kv_heads", (seen["qkv_rows"] // values["head_dim"] - values["n_heads"]) // 2)
    family = "video2world" if cross else "base"
    base = _base_args(folder, family, values)
    for field in ("norm_eps", "rope_theta"):
        values.setdefault(field, stated.get(field, getattr(base, field)))
    if config and config.get("apply_yarn"):
        values["yarn"] = YarnArgs(
            original_latent_shape=tuple(config.get("original_latent_shape") or YarnArgs().original_latent_shape),
            yarn_scale=float(config.get("yarn_scale", 2.0)),
            yarn_beta_fast=float(config.get("yarn_beta_fast", 4.0)),
            yarn_beta_slow=float(config.get("yarn_beta_slow", 1.0)),
        )
    elif config is None or "apply_yarn" not in config:
        values["yarn"] = base.yarn
    else:
        values["yarn"] = None
    if cross and "context_dim" not in values:
        raise CheckpointMismatch("cross-attention without linear_kv weights or crossattn_emb_size",
                                 "the NeMo checkpoint is incomplete")  # fmt: skip
    values["family"] = family
    values["cross_attn_every_k_layers"] = 1 if cross else 0
    args = dataclasses.replace(base, **values)
    notes = _notes(config, stated, family, cross, base)
    return args, notes


def _notes(config: dict | None, stated: dict, family: str, cross: bool, base: ModelArgs) -> list[str]:
    if config is None:
        return [f"no context/model.yaml: architecture from the tensor shapes, RoPE and norm epsilon from {base.name}"]
    wanted = [k for k, v in YAML_FIELDS.items() if not (v == "context_dim" and not cross)]
    missing = [theirs for theirs in wanted if YAML_FIELDS[theirs] not in stated]
    if not missing:
        return []
    from_shapes = [m for m in missing if YAML_FIELDS[m] in SHAPE_FIELDS]
    from_base = [m for m in missing if YAML_FIELDS[m] not in SHAPE_FIELDS]
    parts = []
    if from_shapes:
        parts.append(f"{', '.join(from_shapes)} from the tensor shapes")
    if from_base:
        parts.append(f"{', '.join(from_base)} from {base.name}")
    return [f"context/model.yaml lacks {', '.join(missing)}: " + "; ".join(parts)]


def _base_args(folder: Path, family: str, values: dict) -> ModelArgs:
    """The released preset with this transformer shape, or the folder's ``cosmos_arch.json``."""
    arch = folder / ARCH_FILE
    if arch.is_file():
        return ModelArgs.from_json(arch)
    keys = ("n_layers", "dim", "ffn_hidden_size", "n_heads", "n_kv_heads", "head_dim")
    for preset in PRESETS.values():
        if preset.family == family and all(getattr(preset, k) == values[k] for k in keys if k in values):
            return preset
    shape = ", ".join(f"{k}={values[k]}" for k in keys if k in values)
    raise CheckpointMismatch(
        f"the NeMo checkpoint ({family}, {shape}) is not a released Cosmos size and has no {ARCH_FILE}",
        f"add a {ARCH_FILE} (our ModelArgs JSON) to {folder}",
    )


def model_yaml(args: ModelArgs) -> dict:
    """A ``context/model.yaml`` for ``args`` in NeMo's layout (``_target_`` + ``config``)."""
    config = {theirs: getattr(args, ours) for theirs, ours in YAML_FIELDS.items()}
    if not args.cross_attn_every_k_layers:
        config.pop("crossattn_emb_size")
    config.update(
        vocab_size=args.embedding_rows,
        seq_length=args.max_seq_len,
        normalization="RMSNorm",
        gated_linear_unit=True,
        add_bias_linear=False,
        share_embeddings_and_output_weights=False,
        position_embedding_type="rope",
        rope_dim="3D",
    )
    if args.family == "video2world":
        config.update(output_layer_vocab_size=args.output_rows, training_type="text_to_video")
    if args.yarn is not None:
        y = args.yarn
        config.update(apply_yarn=True, original_latent_shape=list(y.original_latent_shape), yarn_scale=y.yarn_scale,
                      yarn_beta_fast=y.yarn_beta_fast, yarn_beta_slow=y.yarn_beta_slow)  # fmt: skip
    return {"_target_": MODEL_TARGETS[args.family], "config": config}
