"""How the ranks of one tensor-parallel group stay in step inside the pipeline.

Only the group's leader reads inputs, runs the small stages and writes outputs; the other ranks hold
shards of the AR model and must run the same AR calls on bit-identical inputs, and (with
``dd_parallel``) a copy of the diffusion decoder, whose calls they share the same way. The pipeline talks to a
link: :class:`SoloLink` (one process, or TP = 1) passes things through, :class:`TPLink` broadcasts the
leader's batch plan and tensors to its group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from cosmos_cli.parallel.dist import DistContext, broadcast_from_tp_leader

if TYPE_CHECKING:
    from cosmos_cli.parallel.dd import DDParallel


class SoloLink:
    """No tensor parallelism: this process is its own leader."""

    is_leader = True

    def share_object(self, obj: Any) -> Any:
        return obj

    def share_tensor(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        return tensor

    def dd_parallel(self) -> None:
        """One process decodes its videos alone."""
        return None


class TPLink:
    """The leader's objects and tensors, received by every rank of its TP group."""

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self.is_leader = ctx.dims.writes_outputs

    def share_object(self, obj: Any) -> Any:
        box = [obj if self.is_leader else None]
        dist.broadcast_object_list(box, src=self.ctx.dims.tp_leader, group=self.ctx.tp_group, device=self.ctx.device)
        return box[0]

    def share_tensor(self, tensor: torch.Tensor | None) -> torch.Tensor:
        return broadcast_from_tp_leader(tensor, self.ctx)

    def dd_parallel(self) -> DDParallel:
        """The ranks of each TP group decode their group's videos together (CFG x sequence parallel).

        Collective: every rank of the job calls it once, in the same order, to create the groups.
        """
        from cosmos_cli.parallel.dd import DDParallel, default_cfg

        dims = self.ctx.dims
        units = [[d * dims.tp + i for i in range(dims.tp)] for d in range(dims.dp)]
        return DDParallel.create(units, default_cfg(dims.tp))


def link_for(ctx: DistContext | None) -> SoloLink | TPLink:
    return TPLink(ctx) if ctx is not None and ctx.dims.tp > 1 else SoloLink()
