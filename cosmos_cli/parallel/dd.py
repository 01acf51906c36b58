"""The diffusion decoder on several ranks: classifier-free-guidance (CFG) parallel x sequence parallel.

One guided denoiser call evaluates the 7B DiT on two rows per window, the conditional and the
unconditional one, each 20,480 tokens long; the network is compute-bound, so splitting that work is what
makes one video faster on several GPUs:

- **CFG parallel** (``cfg = 2``): the conditional rows run on one rank, the unconditional rows on another;
  one all-gather of the two ``x0`` predictions per call, after which every rank combines them with the
  same expression as one process does. Exact up to the rounding of a batch of one against a batch of two.
- **Sequence parallel** (``sp`` ranks, Ulysses-style): each rank keeps ``1/sp`` of the tokens through the
  blocks (AdaLN, MLP, cross-attention and the norms are per token), and self-attention exchanges tokens
  for heads with one all-to-all before and one after the attention core, so every rank attends over the
  whole sequence for ``heads / sp`` heads. Chosen over ring attention because it keeps the one fused
  attention kernel per block (flash/cuDNN on GPUs), costs two all-to-alls of the activations per block
  (cheap on NVLink next to a 20k-token attention), and needs no change to the softmax; its limit, ``sp``
  must divide the 32 heads, is no limit for 2-8 GPUs of one host.

The model code knows nothing of this: the runner replaces the attention ``core`` seam of the DiT's
self-attention modules and drives the blocks on its slice of the sequence; the decoder takes the denoiser
factory this module supplies. Every rank of a unit runs the same sampler on the same noise and ends with
the same latents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cosmos_cli.models.diffusion_decoder.blocks import Attention
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT
from cosmos_cli.models.diffusion_decoder.rope import rope_cos_sin
from cosmos_cli.models.diffusion_decoder.sampler import DenoiserOutput, GuidedDenoiser, _bcast, edm_scaling


@dataclass(frozen=True)
class DDParallelDims:
    """How the ``world`` ranks of one unit split: ``cfg`` (1 or 2) groups of ``sp`` sequence-parallel ranks.

    Unit rank ``r = cfg_rank * sp + sp_rank``: the ranks of one sequence-parallel group are consecutive, so
    on one node they share NVLink for the all-to-alls, which run every block; the CFG all-gather runs once
    per denoiser call.
    """

    world: int
    cfg: int
    rank: int = 0

    def __post_init__(self) -> None:
        if self.cfg not in (1, 2):
            raise ValueError(f"CFG parallelism is 1 or 2 ranks, not {self.cfg}")
        if self.world < 1 or self.world % self.cfg:
            raise ValueError(f"{self.world} ranks do not split into {self.cfg} CFG branches")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of {self.world} is out of range")

    @property
    def sp(self) -> int:
        return self.world // self.cfg

    @property
    def cfg_rank(self) -> int:
        return self.rank // self.sp

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp


def default_cfg(world: int) -> int:
    """CFG parallelism whenever the ranks pair up: it costs one all-gather per call, the least of all."""
    return 2 if world % 2 == 0 else 1


def token_split(length: int, parts: int) -> list[int]:
    """Tokens per sequence-parallel rank: as even as possible, the first ranks one longer."""
    base, extra = divmod(length, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class DDParallel:
    """This rank's place in its unit and the two process groups it talks over."""

    dims: DDParallelDims
    cfg_group: dist.ProcessGroup | None
    sp_group: dist.ProcessGroup | None

    @classmethod
    def create(cls, units: Sequence[Sequence[int]], cfg: int) -> DDParallel:
        """Build the groups of every unit (a list of global ranks each) on every rank, in one order.

        ``torch.distributed.new_group`` must be called by all ranks for every group, members or not, so
        each rank walks all units and keeps the groups of the unit it belongs to.
        """
        me = dist.get_rank()
        mine: DDParallel | None = None
        for unit in units:
            dims = [DDParallelDims(len(unit), cfg, i) for i in range(len(unit))]
            sp, n_cfg = dims[0].sp, dims[0].cfg
            sp_groups = [dist.new_group([unit[c * sp + s] for s in range(sp)]) for c in range(n_cfg)]
            cfg_groups = [dist.new_group([unit[c * sp + s] for c in range(n_cfg)]) for s in range(sp)]
            if me in unit:
                d = dims[list(unit).index(me)]
                mine = cls(d, cfg_groups[d.sp_rank] if n_cfg > 1 else None, sp_groups[d.cfg_rank] if sp > 1 else None)
        if mine is None:
            raise ValueError(f"rank {me} is in none of the units {list(units)}")
        return mine

    def denoiser(self, net: DiffusionDecoderDiT, tokens, context, **kwargs) -> ParallelGuidedDenoiser:
        """The factory :class:`~cosmos_cli.models.diffusion_decoder.decoder.DiffusionDecoder` takes."""
        return ParallelGuidedDenoiser(net, tokens, context, parallel=self, **kwargs)


# ---- sequence parallelism --------------------------------------------------------------------------
def _all_to_all(rows: list[torch.Tensor], out_rows: list[int], group: dist.ProcessGroup) -> list[torch.Tensor]:
    """Send ``rows[j]`` (dim 0 = rows, any trailing shape) to rank j; receive ``out_rows[j]`` rows from each."""
    send = torch.cat([r.contiguous() for r in rows])
    recv = send.new_empty((sum(out_rows), *send.shape[1:]))
    dist.all_to_all_single(recv, send, out_rows, [r.shape[0] for r in rows], group=group)
    return list(recv.split(out_rows))


class UlyssesCore:
    """Attention core for ``[B, n_local, H, D]``: tokens for heads, attend over all tokens, back."""

    def __init__(self, core, splits: list[int], sp_rank: int, group: dist.ProcessGroup):
        self.core, self.splits, self.sp_rank, self.group = core, splits, sp_rank, group

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, heads, d = q.shape
        sp = len(self.splits)
        if heads % sp:
            raise ValueError(f"{heads} attention heads do not split over {sp} sequence-parallel ranks")
        h = heads // sp
        mine = self.splits[self.sp_rank]
        # [B, n, H, D] -> rows [n*B] per head group j, as [n, B, h, D] so dim 0 concatenates sequences.
        qkv = torch.stack([q, k, v]).permute(2, 1, 0, 3, 4)  # n B 3 H D
        sent = [qkv[:, :, :, j * h : (j + 1) * h].reshape(n * b, 3, h, d) for j in range(sp)]
        got = _all_to_all(sent, [s * b for s in self.splits], self.group)
        full = torch.cat([g.reshape(s, b, 3, h, d) for g, s in zip(got, self.splits, strict=True)])  # N B 3 h D
        fq, fk, fv = full.permute(2, 1, 0, 3, 4).unbind(0)  # each B N h D
        out = self.core(fq.contiguous(), fk.contiguous(), fv.contiguous())  # B N h D
        per_rank = out.transpose(0, 1).split(self.splits)  # [n_j, B, h, D] for rank j
        back = _all_to_all([p.reshape(p.shape[0] * b, h, d) for p in per_rank], [mine * b] * sp, self.group)
        return torch.cat([g.reshape(mine, b, h, d) for g in back], dim=2).transpose(0, 1)  # B n H D


@contextlib.contextmanager
def ulysses_attention(net: DiffusionDecoderDiT, splits: list[int], sp_rank: int, group) -> Iterator[None]:
    """Replace the core of every self-attention module of ``net`` for the duration."""
    patched = [m for m in net.modules() if isinstance(m, Attention) and m.is_self_attention]
    for module in patched:
        module.core = UlyssesCore(Attention.core.__get__(module), splits, sp_rank, group)
    try:
        yield
    finally:
        for module in patched:
            del module.core


def _gather_tokens(local: torch.Tensor, splits: list[int], group) -> torch.Tensor:
    """All ranks' ``[B, n_j, F]`` slices, joined along the sequence (padded to the longest for the gather)."""
    longest = max(splits)
    padded = local.new_zeros(local.shape[0], longest, local.shape[2])
    padded[:, : local.shape[1]] = local
    parts = [torch.empty_like(padded) for _ in splits]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:, :n] for p, n in zip(parts, splits, strict=True)], dim=1)


class SequenceParallelDiT:
    """``net``'s forward with the tokens split over the ranks of ``group`` (same signature, same output)."""

    def __init__(self, net: DiffusionDecoderDiT, sp: int, sp_rank: int, group):
        self.net, self.sp, self.sp_rank, self.group = net, sp, sp_rank, group

    def __call__(self, x, timesteps, context, tokens, padding_mask=None, fps=None) -> torch.Tensor:
        net = self.net
        x_embed = net.embed(x, tokens, padding_mask)
        b, t, h, w, d = x_embed.shape
        emb, adaln_lora = net.time_embedding(timesteps)
        rope_cos, rope_sin = rope_cos_sin(net.rope_angles(t, h, w, fps))
        splits = token_split(t * h * w, self.sp)
        start = sum(splits[: self.sp_rank])
        mine = slice(start, start + splits[self.sp_rank])
        hidden = x_embed.reshape(b, t * h * w, d)[:, mine]
        cos, sin = rope_cos[:, mine], rope_sin[:, mine]
        with ulysses_attention(net, splits, self.sp_rank, self.group):
            for block in net.blocks.values():
                hidden = block(hidden, emb, adaln_lora, context, cos, sin)
        out = _gather_tokens(net.final_layer(hidden, emb, adaln_lora), splits, self.group)
        return net.unpatchify(out, (t, h, w))


# ---- CFG parallelism ---------------------------------------------------------------------------------
class ParallelGuidedDenoiser(GuidedDenoiser):
    """:class:`GuidedDenoiser` whose network rows are spread over the unit's ranks.

    With ``cfg = 2`` this rank evaluates only its branch (rows ``[:B]`` conditional on CFG rank 0, the
    unconditional ones on CFG rank 1) and the two ``x0`` halves are all-gathered; the guidance formula is
    then the one-process one, on identical tensors on every rank.
    """

    def __init__(self, net, tokens, context, *, parallel: DDParallel, **kwargs):
        super().__init__(net, tokens, context, **kwargs)
        self.parallel = parallel
        dims = parallel.dims
        self.forward = net if dims.sp == 1 else SequenceParallelDiT(net, dims.sp, dims.sp_rank, parallel.sp_group)
        if dims.cfg == 2:  # keep only this rank's branch of the 2B rows
            rows = slice(dims.cfg_rank * self.batch, (dims.cfg_rank + 1) * self.batch)
            self.tokens, self.context, self.fps = self.tokens[rows], self.context[rows], self.fps[rows]
            if self.padding_mask is not None:
                self.padding_mask = self.padding_mask[rows]

    def predict(self, x: torch.Tensor, sigma: torch.Tensor) -> DenoiserOutput:
        if self.parallel.dims.cfg == 1:
            x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])
        else:
            x2, sigma2 = x, sigma
        c_skip, c_out, c_in, c_noise = edm_scaling(sigma2, self.sigma_data)
        net_in = _bcast(c_in, x2) * x2
        net_out = self.forward(net_in, c_noise, self.context, self.tokens, self.padding_mask, self.fps)
        x0 = _bcast(c_skip, x2) * x2 + _bcast(c_out, net_out) * net_out
        if self.parallel.dims.cfg == 2:
            x0, net_out, net_in, c_noise = (self._gather_branches(t) for t in (x0, net_out, net_in, c_noise))
        return DenoiserOutput(net_in, c_noise, net_out, x0)

    def _gather_branches(self, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(2)]
        dist.all_gather(parts, local.contiguous(), group=self.parallel.cfg_group)
        return torch.cat(parts)
