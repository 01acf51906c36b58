"""The key mapping between NVIDIA's ``model.pt`` names (ours) and NeMo/megatron-core names, both ways.

Spec ``nemo.md`` section 2. Every one of our tensors is a slice of exactly one NeMo tensor, described by a
:class:`Source`: the whole tensor (``id``), a block of rows (``linear_fc1 = cat([w1, w3])``), or every
group's share of rows (``linear_qkv``: per KV group ``G`` query heads then one key and one value head;
cross-attention ``linear_kv``: per group one key then one value head, ``[2 * n_kv_heads * head_dim,
context_dim]``, which NVIDIA's importer gets wrong when ``context_dim != n_kv_heads * head_dim``).
Layer tensors are named ``decoder.layers.<name>`` with the layer as dim 0 (stacked, mcore's default) or
``decoder.layers.<i>.<name>`` (per layer); both are accepted, and written as asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cosmos_cli.models.config import ModelArgs

MODULE = "module."
LAYERS = "decoder.layers."

GLOBAL = {
    "tok_embeddings.weight": "embedding.word_embeddings.weight",
    "norm.weight": "decoder.final_layernorm.weight",
    "output.weight": "output_layer.weight",
}
LAYER_IDENTITY = {
    "attention_norm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "attention.q_norm.weight": "self_attention.q_layernorm.weight",
    "attention.k_norm.weight": "self_attention.k_layernorm.weight",
    "attention.wo.weight": "self_attention.linear_proj.weight",
    "ffn_norm.weight": "mlp.linear_fc1.layer_norm_weight",
    "feed_forward.w2.weight": "mlp.linear_fc2.weight",
    "cross_attention_norm.weight": "pre_cross_attn_layernorm.weight",
    "cross_attention.wq.weight": "cross_attention.linear_q.weight",
    "cross_attention.q_norm.weight": "cross_attention.q_layernorm.weight",
    "cross_attention.k_norm.weight": "cross_attention.k_layernorm.weight",
    "cross_attention.wo.weight": "cross_attention.linear_proj.weight",
}
QKV = "self_attention.linear_qkv.weight"
KV = "cross_attention.linear_kv.weight"
FC1 = "mlp.linear_fc1.weight"


@dataclass(frozen=True)
class Source:
    """Where one of our tensors lives in a NeMo tensor (of one layer, if ``layer`` is set).

    ``kind`` ``id``: the whole tensor. ``rows``: rows ``[offset, offset + rows)``. ``grouped``: the NeMo
    rows form ``groups`` blocks of ``stride`` rows, and ours are rows ``[offset, offset + rows)`` of each.
    """

    nemo: str
    layer: int | None
    kind: str = "id"
    offset: int = 0
    rows: int = 0
    groups: int = 1
    stride: int = 0


def sources(args: ModelArgs) -> dict[str, Source]:
    """Our key (without ``model.``) -> its :class:`Source`, for every tensor of ``args``'s transformer."""
    hn, ng = args.head_dim, args.n_kv_heads
    per_group = args.n_heads // ng * hn
    out = {ours: Source(nemo, None) for ours, nemo in GLOBAL.items()}
    for i in range(args.n_layers):
        names = dict(LAYER_IDENTITY)
        if not args.qk_norm:
            names = {k: v for k, v in names.items() if not k.endswith(("q_norm.weight", "k_norm.weight"))}
        if not args.has_cross_attn(i):
            names = {k: v for k, v in names.items() if not k.startswith("cross_attention")}
        for ours, nemo in names.items():
            out[f"layers.{i}.{ours}"] = Source(nemo, i)
        qkv = dict(kind="grouped", groups=ng, stride=per_group + 2 * hn)
        out[f"layers.{i}.attention.wq.weight"] = Source(QKV, i, offset=0, rows=per_group, **qkv)
        out[f"layers.{i}.attention.wk.weight"] = Source(QKV, i, offset=per_group, rows=hn, **qkv)
        out[f"layers.{i}.attention.wv.weight"] = Source(QKV, i, offset=per_group + hn, rows=hn, **qkv)
        f = args.ffn_hidden_size
        out[f"layers.{i}.feed_forward.w1.weight"] = Source(FC1, i, kind="rows", offset=0, rows=f)
        out[f"layers.{i}.feed_forward.w3.weight"] = Source(FC1, i, kind="rows", offset=f, rows=f)
        if args.has_cross_attn(i):
            kv = dict(kind="grouped", groups=ng, stride=2 * hn)
            out[f"layers.{i}.cross_attention.wk.weight"] = Source(KV, i, offset=0, rows=hn, **kv)
            out[f"layers.{i}.cross_attention.wv.weight"] = Source(KV, i, offset=hn, rows=hn, **kv)
    return out


def nemo_name(source: Source, stacked: bool) -> str:
    """The NeMo key (with ``module.``) that holds ``source``; layer tensors stacked or per layer."""
    if source.layer is None:
        return MODULE + source.nemo
    return MODULE + LAYERS + (source.nemo if stacked else f"{source.layer}.{source.nemo}")


def to_nemo(state: dict[str, torch.Tensor], args: ModelArgs, *, stacked: bool = True) -> dict[str, torch.Tensor]:
    """Our full state dict (keys without ``model.``) -> NeMo's (``module.`` keys), the forward transforms."""
    parts: dict[tuple[str, int | None], list[tuple[Source, torch.Tensor]]] = {}
    for ours, source in sources(args).items():
        parts.setdefault((source.nemo, source.layer), []).append((source, state[ours]))
    per_layer: dict[tuple[str, int | None], torch.Tensor] = {}
    for key, items in parts.items():
        items.sort(key=lambda item: item[0].offset)
        first = items[0][0]
        if first.kind == "id":
            tensor = items[0][1]
        elif first.kind == "rows":
            tensor = torch.cat([t for _, t in items], 0)
        else:
            cols = items[0][1].shape[1]
            tensor = torch.cat([t.reshape(s.groups, s.rows, cols) for s, t in items], 1).reshape(-1, cols)
        per_layer[key] = tensor.contiguous()
    out: dict[str, torch.Tensor] = {}
    names = {nemo for nemo, layer in per_layer if layer is not None}
    for (nemo, layer), tensor in per_layer.items():
        if layer is None or not stacked:
            out[nemo_name(Source(nemo, layer), stacked)] = tensor
    if stacked:
        for nemo in sorted(names):
            layers = [per_layer[(nemo, i)] for i in range(args.n_layers)]
            out[nemo_name(Source(nemo, 0), True)] = torch.stack(layers).contiguous()
    return out


def select(source: Source, read, region: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Elements ``region`` of our tensor ``source``, via ``read(nemo_region)`` on the layer's NeMo tensor.

    ``grouped`` sources read the whole span of the groups that the rows touch (one contiguous NeMo block)
    and pick each group's share, so a tensor-parallel rank's rows (whole groups) read only its groups.
    """
    if source.kind == "id":
        return read(region)
    (start, stop), rest = region[0], tuple(region[1:])
    if source.kind == "rows":
        return read(((source.offset + start, source.offset + stop), *rest))
    g0, g1 = start // source.rows, (stop - 1) // source.rows + 1
    block = read(((g0 * source.stride, g1 * source.stride), *rest))
    block = block.reshape(g1 - g0, source.stride, *block.shape[1:])[:, source.offset : source.offset + source.rows]
    rows = block.reshape(-1, *block.shape[2:])
    return rows[start - g0 * source.rows : stop - g0 * source.rows]
