"""Tensor parallelism for the AR transformer: a rewrite of a plain model with megatron-core's layers.

The model code stays single-device; :func:`apply_tp` swaps its ``nn.Linear`` / ``nn.Embedding``
modules for thin subclasses of megatron-core's sharded layers (same attribute names, so the
checkpoint's keys still address them) and divides the head counts of every ``Attention``. With TP
size ``t`` (a divisor of the KV heads: 1, 2, 4 or 8 for Cosmos), rank ``r`` holds:

=====================================  ========================  =========================================
module                                 megatron-core layer       rank ``r``'s slice
=====================================  ========================  =========================================
attention / cross_attention ``wq``     ColumnParallelLinear      query heads ``[r*H/t, (r+1)*H/t)``
``wk``, ``wv``                         ColumnParallelLinear      KV heads ``[r*G/t, (r+1)*G/t)``: the groups
                                                                 of exactly its query heads (GQA maps query
                                                                 head ``h`` to KV head ``h // (H/G)``)
``wo``                                 RowParallelLinear         its heads' input columns; all-reduce
feed_forward ``w1``, ``w3`` / ``w2``   Column / Row              hidden units; all-reduce after ``w2``
``output``                             ColumnParallelLinear      vocabulary rows, then an all-gather
``tok_embeddings``                     VocabParallelEmbedding    vocabulary rows; masked lookup, all-reduce
norms, RoPE and position tables        (replicated)              everything
=====================================  ========================  =========================================

A step costs ``2-3`` all-reduces per layer (self-attention, cross-attention, MLP), one for the
embedding and one all-gather of the logits, so that every rank holds the full logits row and samples
the same token (the sampler is deterministic given logits, seed and position). Attention, RoPE, the
KV cache (now ``G/t`` heads per rank) and the logits gather are our own code: megatron-core's
versions need CUDA and its RNG tracker. Fusing q/k/v and gate/up after this rewrite stays correct,
since it concatenates the local shards and the head counts are per rank.

Two megatron-core methods are replaced for inference: ``_forward_impl`` by ``F.linear`` (its
frozen-weight path is an autograd.Function whose helper calls ``warnings.warn`` in every forward,
which ``torch.compile(fullgraph=True)`` cannot trace; we never need its backward), and the vocabulary
embedding's forward by a ``masked_fill`` version of the same masking (fixed shapes, no boolean-mask
``index_put_``), so a decode step has no host sync and captures in one CUDA graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cosmos_cli.errors import BadInput, CheckpointMismatch
from cosmos_cli.models.ar.transformer import Attention, Transformer
from cosmos_cli.models.ar.weights import check_state_dict, read_state_dict
from cosmos_cli.models.config import ModelArgs

with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": we use neither
    warnings.simplefilter("ignore")
    from megatron.core.model_parallel_config import ModelParallelConfig
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region


_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the older name


class ColumnLinear(ColumnParallelLinear):
    """Output features split over the TP group (weight rows); no communication in forward."""

    partition_dim = 0

    def _forward_impl(self, input, weight, bias=None, **_):
        return F.linear(input, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[0]


class RowLinear(RowParallelLinear):
    """Input features split over the TP group (weight columns); partial outputs all-reduced."""

    partition_dim = 1

    def _forward_impl(self, input, weight, bias=None, **_):
        return F.linear(input, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[0]


class GatheredOutput(ColumnLinear):
    """The output head split by vocabulary rows; the logits are gathered so every rank has the full row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = super().forward(x).contiguous()
        size = self.tp_group.size()
        gathered = local.new_empty((size * local.shape[0], *local.shape[1:]))
        _all_gather(gathered, local, group=self.tp_group)
        return gathered.view(size, *local.shape).movedim(0, -2).flatten(-2)


class VocabEmbedding(VocabParallelEmbedding):
    """Embedding rows split by vocabulary: a rank looks up the tokens in its range, zeros the rest, all-reduce."""

    partition_dim = 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        local = tokens - self.vocab_start_index
        outside = (local < 0) | (local >= self.num_embeddings_per_partition)
        rows = F.embedding(local.masked_fill(outside, 0), self.weight)
        return reduce_from_tensor_model_parallel_region(rows.masked_fill(outside[..., None], 0), self.tp_group)


def valid_tp_sizes(args: ModelArgs) -> list[int]:
    """TP sizes that split every sharded dimension of ``args`` evenly (1, 2, 4, 8 for the Cosmos models)."""
    dims = (args.n_kv_heads, args.n_heads, args.ffn_hidden_size, args.output_rows, args.embedding_rows)
    return [t for t in range(1, args.n_kv_heads + 1) if all(d % t == 0 for d in dims)]


def check_tp(args: ModelArgs, tp: int) -> None:
    """A one-line error when ``tp`` cannot split ``args`` (heads, MLP, vocabulary)."""
    sizes = valid_tp_sizes(args)
    if tp not in sizes:
        raise BadInput(
            f"--tp {tp} cannot split {args.name} ({args.n_kv_heads} KV heads)",
            f"use --tp {', '.join(map(str, sizes))}",
        )


def apply_tp(model: Transformer, tp_group: dist.ProcessGroup) -> Transformer:
    """Rewrite ``model`` (built on the meta device, not yet loaded) for this rank of ``tp_group``.

    Load it afterwards with :func:`load_sharded`; TP size 1 leaves the model unchanged.
    """
    tp = tp_group.size()
    check_tp(model.args, tp)
    if tp == 1:
        return model
    if any(p.device.type != "meta" for p in model.parameters()):
        raise ValueError("apply_tp rewrites a model built on the meta device, before loading (build_tp_model)")
    config = ModelParallelConfig(
        tensor_model_parallel_size=tp,
        use_cpu_initialization=True,  # allocate here (on meta), never on the current CUDA device
        perform_initialization=False,
        gradient_accumulation_fusion=False,
    )

    def column(linear: nn.Linear, cls=ColumnLinear) -> ColumnLinear:
        return cls(
            linear.in_features, linear.out_features, config=config, init_method=None, bias=False, tp_group=tp_group
        )

    def row(linear: nn.Linear) -> RowLinear:
        return RowLinear(
            linear.in_features,
            linear.out_features,
            config=config,
            init_method=None,
            bias=False,
            input_is_parallel=True,
            skip_bias_add=False,
            tp_group=tp_group,
        )

    with torch.device("meta"):
        for layer in model.layers:
            for attn in (layer.attention, layer.cross_attention):
                if attn is not None:
                    _shard_attention(attn, tp, column, row)
            ff = layer.feed_forward
            if ff.w13 is not None:
                raise ValueError("apply_tp before fuse_projections")
            ff.w1, ff.w3, ff.w2 = column(ff.w1), column(ff.w3), row(ff.w2)
        model.output = column(model.output, GatheredOutput)
        emb = model.tok_embeddings
        model.tok_embeddings = VocabEmbedding(
            emb.num_embeddings, emb.embedding_dim, init_method=None, config=config, tp_group=tp_group
        )
    return model


def _shard_attention(attn: Attention, tp: int, column, row) -> None:
    if attn.wqkv is not None:
        raise ValueError("apply_tp before fuse_projections")
    attn.wq, attn.wk, attn.wv, attn.wo = column(attn.wq), column(attn.wk), column(attn.wv), row(attn.wo)
    attn.n_heads //= tp
    attn.n_kv_heads //= tp


@torch.no_grad()
def load_sharded(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, dtype: torch.dtype, device: torch.device
) -> None:
    """Assign every parameter of ``model`` its slice of the full ``state`` (the checkpoint's names).

    Sharded modules take ``narrow(partition_dim, rank * size, size)`` of the full tensor, which on an
    mmap'd checkpoint reads only that slice's pages; everything else is copied whole. Only the
    slice is moved to ``device`` (and copied out of a full tensor that already lives there), so no
    rank ever holds the full model on its device.
    """
    for prefix, module in model.named_modules():
        dim = getattr(module, "partition_dim", None)
        for name, param in list(module.named_parameters(recurse=False)):
            key = f"{prefix}.{name}" if prefix else name
            if key not in state:
                raise CheckpointMismatch(f"the checkpoint has no {key}", "check that the checkpoint is complete")
            full = state[key]
            if dim is None:
                local = full
            else:
                size = full.shape[dim] // module.tp_group.size()
                local = full.narrow(dim, module.tp_group.rank() * size, size)
            if local.shape != param.shape:
                raise CheckpointMismatch(
                    f"{key}: slice {tuple(local.shape)} of {tuple(full.shape)} != {tuple(param.shape)}",
                    "check that the checkpoint matches the model size",
                )
            setattr(module, name, nn.Parameter(_own(local.to(device=device, dtype=dtype)), False))


def _own(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in storage of its own size: a view into a larger full tensor would keep all of it alive."""
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.nbytes:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


@torch.no_grad()
def _random_shards(model: nn.Module, *, dtype: torch.dtype, device: torch.device) -> None:
    """Random local shards (``--load-format dummy``): norms 1, matrices N(0, 0.02), as ``build_model``."""
    for prefix, module in model.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            value = torch.empty(param.shape, dtype=dtype, device=device)
            if f"{prefix}.{name}".endswith("norm.weight"):
                value.fill_(1.0)
            else:
                value.normal_(0.0, 0.02)
            setattr(module, name, nn.Parameter(value, False))


def build_tp_model(
    args: ModelArgs,
    *,
    weights: Path | None,
    dtype: torch.dtype,
    device: torch.device,
    tp_group: dist.ProcessGroup,
) -> Transformer:
    """``build_model`` for one rank of ``tp_group``: meta model, full-shape checkpoint check, TP rewrite,
    then only this rank's slices read from the mmap'd ``weights`` (random shards if None)."""
    check_tp(args, tp_group.size())
    with torch.device("meta"):
        model = Transformer(args)
    state = None
    if weights is not None:
        state = read_state_dict(weights, lazy=True)  # NeMo folders: each rank reads only its slices
        check_state_dict(model, state, str(weights))
    apply_tp(model, tp_group)
    if state is None:
        _random_shards(model, dtype=dtype, device=device)
    else:
        load_sharded(model, state, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)
