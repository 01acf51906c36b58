"""How the ranks of one tensor-parallel group stay in step inside the pipeline.

Only the group's leader reads inputs, runs the small stages and writes outputs; the other ranks hold
shards of the AR model and must run the same AR calls on bit-identical inputs. The pipeline talks to a
link: :class:`SoloLink` (one process, or TP = 1) passes things through, :class:`TPLink` broadcasts the
leader's batch plan and tensors to its group.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from cosmos_cli.parallel.dist import DistContext, broadcast_from_tp_leader


class SoloLink:
    """No tensor parallelism: this process is its own leader."""

    is_leader = True

    def share_object(self, obj: Any) -> Any:
        return obj

    def share_tensor(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        return tensor


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


def link_for(ctx: DistContext | None) -> SoloLink | TPLink:
    return TPLink(ctx) if ctx is not None and ctx.dims.tp > 1 else SoloLink()
