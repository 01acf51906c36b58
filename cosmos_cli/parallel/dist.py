"""The torchrun environment as process groups, and each rank's role in tensor and data parallelism.

``world = tp * dp``: the ranks of one tensor-parallel (TP) group are consecutive (global rank
``dp_rank * tp + tp_rank``, megatron-core's ``tp-cp-ep-dp-pp`` order) so that on one node they share
NVLink; the ``dp`` groups split the samples (:func:`cosmos_cli.parallel.data.shard_samples`). The
TP leader (``tp_rank == 0``) of each group is the one rank that writes that group's outputs.

megatron-core owns the process groups (``parallel_state.initialize_model_parallel``) because its
sharded layers find their TP group there; the default group uses NCCL on GPUs and gloo on CPU. Not
under torchrun, :func:`distributed` yields None and everything runs in one process as before.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cosmos_cli import settings
from cosmos_cli.errors import BadInput, DistributedError
from cosmos_cli.parallel.launch import NVLS_ENV, TorchrunEnv, worker_failures


@dataclass(frozen=True)
class ParallelDims:
    """How ``world`` ranks split into tensor-parallel groups of ``tp`` and ``world // tp`` data-parallel groups."""

    world: int
    tp: int
    rank: int = 0

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of {self.world} is out of range")
        if self.tp < 1 or self.world % self.tp:
            options = ", ".join(str(t) for t in range(1, self.world + 1) if self.world % t == 0)
            raise BadInput(f"--tp {self.tp} does not divide the {self.world} processes", f"use --tp {options}")

    @property
    def dp(self) -> int:
        return self.world // self.tp

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp

    @property
    def tp_leader(self) -> int:
        """Global rank of this TP group's first rank: it loads inputs and writes outputs."""
        return self.dp_rank * self.tp

    @property
    def writes_outputs(self) -> bool:
        """One rank per sample writes files and reports progress: the TP leader of its DP group."""
        return self.tp_rank == 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_tp(world: int, n_samples: int, n_kv_heads: int) -> int:
    """``--tp`` when not given: data parallelism up to the number of samples, TP for the rest.

    DP needs no communication, so it is the better use of GPUs while there are samples to spread;
    one sample on N GPUs gets TP = N. TP must divide both the world and the model's KV heads.
    """
    options = [t for t in range(1, world + 1) if world % t == 0 and n_kv_heads % t == 0]
    for tp in options:
        if world // tp <= max(n_samples, 1):
            return tp
    return options[-1]


@dataclass
class DistContext:
    """One worker's distributed state: where it runs and the groups its collectives use."""

    env: TorchrunEnv
    dims: ParallelDims
    device: torch.device
    backend: str
    tp_group: dist.ProcessGroup
    dp_group: dist.ProcessGroup


def _parallel_state():
    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed": we use neither
        warnings.simplefilter("ignore")
        from megatron.core import parallel_state
    return parallel_state


def _device(env: TorchrunEnv, device_type: str | None) -> torch.device:
    kind = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind != "cuda":
        return torch.device(kind)
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise DistributedError(
            f"{env.local_world} processes on this node but only {count} CUDA device(s) visible",
            "lower --gpus or check CUDA_VISIBLE_DEVICES",
        )
    return torch.device("cuda", env.local_rank)


def init_distributed(tp: int, *, device_type: str | None = None, env: TorchrunEnv | None = None) -> DistContext | None:
    """Process groups for this torchrun worker with TP size ``tp``; None when not under torchrun.

    Sets ``NCCL_NVLS_ENABLE=0`` before any NCCL communicator exists: NVLink SHARP (multicast) is not
    used, on purpose (not every machine supports it, and our messages are small).
    """
    env = env or TorchrunEnv.from_environ()
    if env is None:
        return None
    dims = ParallelDims(env.world, tp, env.rank)
    device = _device(env, device_type)
    if (requested := settings.nvls_requested()) is not None:
        from cosmos_cli.console import warn

        warn(f"{NVLS_ENV}={requested} ignored: NVLink multicast stays off")
    os.environ[NVLS_ENV] = "0"
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group(backend, device_id=device)
        else:
            dist.init_process_group(backend)
    tp_group, dp_group = init_model_parallel(dims)
    return DistContext(env, dims, device, backend, tp_group, dp_group)


def init_model_parallel(dims: ParallelDims) -> tuple[dist.ProcessGroup, dist.ProcessGroup]:
    """megatron-core's TP and DP groups for ``dims`` (re-created if they exist with another TP size)."""
    ps = _parallel_state()
    if ps.model_parallel_is_initialized():
        if ps.get_tensor_model_parallel_world_size() == dims.tp:
            return ps.get_tensor_model_parallel_group(), ps.get_data_parallel_group()
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(tensor_model_parallel_size=dims.tp, create_gloo_process_groups=False)
    if (ps.get_tensor_model_parallel_rank(), ps.get_data_parallel_rank()) != (dims.tp_rank, dims.dp_rank):
        raise DistributedError(
            f"megatron-core placed rank {dims.rank} at tp={ps.get_tensor_model_parallel_rank()}, "
            f"dp={ps.get_data_parallel_rank()}; expected tp={dims.tp_rank}, dp={dims.dp_rank}",
            "report this with the versions from `cosmos-cli doctor`",
        )
    return ps.get_tensor_model_parallel_group(), ps.get_data_parallel_group()


def teardown() -> None:
    """Destroy megatron-core's groups and the default group (a clean exit, no NCCL warnings)."""
    ps = _parallel_state()
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(tp: int, *, device_type: str | None = None) -> Iterator[DistContext | None]:
    """Around a worker's job: process groups in, teardown out; None (and nothing else) outside torchrun.

    An exception on this rank is recorded for the launcher (one line naming the rank) and re-raised;
    the groups are then left alone, since other ranks may be blocked in a collective and torchrun
    stops them.
    """
    env = TorchrunEnv.from_environ()
    if env is None:
        yield None
        return
    with worker_failures(env):
        ctx = init_distributed(tp, device_type=device_type, env=env)
        yield ctx
    teardown()


def broadcast_from_tp_leader(tensor: torch.Tensor | None, ctx: DistContext) -> torch.Tensor:
    """The TP leader's ``tensor`` on every rank of its TP group (others pass None).

    The ranks of one TP group must feed the model bit-identical inputs (prompt tokens, text context),
    or their shards compute different things; sending the leader's copy guarantees it, and lets only
    the leader run the text encoder and the tokenizer.
    """
    if ctx.dims.tp == 1:
        return tensor.to(ctx.device)
    meta = [(tuple(tensor.shape), tensor.dtype) if ctx.dims.writes_outputs else None]
    dist.broadcast_object_list(meta, src=ctx.dims.tp_leader, group=ctx.tp_group, device=ctx.device)
    shape, dtype = meta[0]
    if ctx.dims.writes_outputs:
        buffer = tensor.to(ctx.device).contiguous()
    else:
        buffer = torch.empty(shape, dtype=dtype, device=ctx.device)
    dist.broadcast(buffer, src=ctx.dims.tp_leader, group=ctx.tp_group)
    return buffer


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable: per-sample results, timings), in rank order, on every rank."""
    out: list[Any] = [None] * ctx.dims.world
    dist.all_gather_object(out, obj)
    return out
