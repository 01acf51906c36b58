"""``stream`` placement: a stage runs with its weights in pinned host memory, and its repeated blocks
(transformer layers) come to the GPU one at a time while it runs.

With ``cpu`` placement a stage is copied whole to the GPU while it runs, so full offload is bounded by the
largest stage (the 7B diffusion decoder, LlamaGuard-7b). Under ``stream`` only the stage's non-block
weights (embeddings, heads, norms) go to the GPU for the use; each block gets a forward pre-hook that waits
for its copy and starts copying the next block on a side CUDA stream (so the copy of block i+1 overlaps the
compute of block i), and a forward hook that points its tensors back at the kept host copies, freeing the
GPU copy (weights are read-only at inference: nothing is copied back). At most two blocks of a block list
are on the GPU at once. Every forward pass streams every block again; after the last block the first one is
prefetched for the next pass (diffusion steps, LLM decode steps).

The blocks are found generically (:func:`find_blocks`): in each module of the stage, the ``nn.ModuleList``
(or ``nn.ModuleDict``) holding the most parameters, if it holds at least half of them and its blocks share
no tensor with each other or with the rest. A stage may name its own with ``stream_blocks()``. A module
without such a list is moved whole, as under ``cpu``.

Blocks compiled one by one (``block.compile()``, as the diffusion decoder does) keep working: the hooks run
outside the compiled frame (``torch.compiler.disable``), and swapping ``param.data`` keeps the compiled
graph's guards valid, since dtype, shape and device at call time are those of a resident block.

On a CPU "device" (tests run the moves with ``Placements(offload=True)``) the copies are plain clones,
synchronous, and no streams are used.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator

import torch
from torch import nn

MIN_SHARE = 0.5
"""A block list is streamed only if it holds at least this fraction of its module's parameters."""

Container = nn.ModuleList | nn.ModuleDict


def block_list(container: Container) -> list[nn.Module]:
    return list(container.values()) if isinstance(container, nn.ModuleDict) else list(container)


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers, each occurrence (a tensor registered twice counts twice)."""
    params = (p for _, p in module.named_parameters(remove_duplicate=False))
    buffers = (b for _, b in module.named_buffers(remove_duplicate=False))
    return list(itertools.chain(params, buffers))


def find_blocks(module: nn.Module) -> Container | None:
    """The module's repeated blocks: the ``ModuleList`` / ``ModuleDict`` below it holding the most parameters,
    if it holds at least :data:`MIN_SHARE` of them and its blocks share no tensor with one another or with
    the rest of the module (tied weights would be dropped while still in use). None: nothing to stream."""
    total = sum(p.numel() for p in module.parameters())
    best, most = None, 0
    for child in module.modules():
        if child is module or not isinstance(child, (nn.ModuleList, nn.ModuleDict)) or len(child) == 0:
            continue
        count = sum(p.numel() for p in child.parameters())
        if count > most:
            best, most = child, count
    if best is None or total == 0 or most < MIN_SHARE * total:
        return None
    everywhere = Counter(id(t) for t in _tensors(module))
    owner: dict[int, int] = {}
    for index, block in enumerate(block_list(best)):
        for tensor in _tensors(block):
            if owner.setdefault(id(tensor), index) != index:
                return None  # shared between blocks
    inside = Counter(id(t) for block in block_list(best) for t in _tensors(block))
    if any(everywhere[key] != count for key, count in inside.items()):
        return None  # also used outside the blocks
    return best


def stage_blocks(stage) -> list[Container]:
    """The block lists a stage streams: its ``stream_blocks()`` if it defines one, else one per module
    (:func:`find_blocks`; modules without one are moved whole)."""
    custom = getattr(stage, "stream_blocks", None)
    if callable(custom):
        return list(custom())
    return [c for m in stage.modules() if (c := find_blocks(m)) is not None]


@contextlib.contextmanager
def detached(containers: Iterable[Container], roots: Iterable[nn.Module]) -> Iterator[None]:
    """The block lists taken out of their parents for the duration (so that ``stage.to(device)`` moves
    everything else), put back in their places after."""
    targets = {id(c) for c in containers}
    saved: list[tuple[nn.Module, list[tuple[str, nn.Module | None]]]] = []
    try:
        for root in roots:
            for parent in root.modules():
                children = list(parent._modules.items())
                if any(id(child) in targets for _, child in children):
                    saved.append((parent, children))
        for parent, children in saved:
            parent._modules.clear()
            parent._modules.update((k, v) for k, v in children if id(v) not in targets)
        yield
    finally:
        for parent, children in saved:
            parent._modules.clear()
            parent._modules.update(children)


class _Block:
    """One block's tensors: the objects the module holds, their kept host copies, and the device copies
    while it is resident."""

    def __init__(self, module: nn.Module):
        self.module = module
        seen: set[int] = set()
        self.tensors: list[torch.Tensor] = []
        for tensor in _tensors(module):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                self.tensors.append(tensor)
        self.host = [t.data for t in self.tensors]
        self.nbytes = sum(t.numel() * t.element_size() for t in self.host)
        self.copies: list[torch.Tensor] | None = None
        self.ready: torch.cuda.Event | None = None


class BlockStream:
    """The hooks that stream a stage's blocks while it is in use; :meth:`close` removes them and leaves
    every block on its host copies.

    ``copies`` / ``bytes`` count the block copies made; ``most_resident`` is the largest number of blocks of
    one list that were on the device at once.
    """

    def __init__(self, containers: Iterable[Container], device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.rings = [[_Block(m) for m in block_list(c)] for c in containers]
        self.rings = [ring for ring in self.rings if ring]
        self.copies = 0
        self.bytes = 0
        self.most_resident = 0
        self._handles = []
        for ring in self.rings:
            for index, block in enumerate(ring):
                before, after = self._hooks(ring, index)
                self._handles.append(block.module.register_forward_pre_hook(before))
                self._handles.append(block.module.register_forward_hook(after))
        for ring in self.rings:  # the first block's copy overlaps the non-block work before it
            self._fetch(ring, ring[0])

    def _hooks(self, ring: list[_Block], index: int):
        @torch.compiler.disable
        def before(module, args):
            self._before(ring, index)

        @torch.compiler.disable
        def after(module, args, output):
            self._evict(ring[index])

        return before, after

    # ---- the hooks -----------------------------------------------------------------------------
    def _before(self, ring: list[_Block], index: int) -> None:
        block, following = ring[index], ring[(index + 1) % len(ring)]
        for other in ring:  # a block prefetched but skipped: at most this one and the next stay
            if other is not block and other is not following and other.copies is not None:
                self._evict(other)
        if block.copies is None:
            self._fetch(ring, block)
        if block.ready is not None:  # the compute stream waits for the copy, and owns the memory after
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(block.ready)
            for copy in block.copies:
                copy.record_stream(compute)
            block.ready = None
        if following is not block and following.copies is None:
            self._fetch(ring, following)

    def _fetch(self, ring: list[_Block], block: _Block) -> None:
        """Start copying a block to the device (on the side stream) and point its tensors at the copies."""
        # Plain tensors (not inference tensors) even inside inference_mode, like the weights of a resident
        # stage, so that a compiled block sees the same kind of input every time.
        with torch.inference_mode(False), torch.no_grad():
            if self.cuda:
                with torch.cuda.stream(self.copy_stream):
                    copies = [host.to(self.device, non_blocking=True) for host in block.host]
                    block.ready = torch.cuda.Event()
                    block.ready.record(self.copy_stream)
            else:
                copies = [host.to(self.device, copy=True) for host in block.host]
            for tensor, copy in zip(block.tensors, copies, strict=True):
                tensor.data = copy
        block.copies = copies
        self.copies += 1
        self.bytes += block.nbytes
        self.most_resident = max(self.most_resident, sum(b.copies is not None for b in ring))

    def _evict(self, block: _Block) -> None:
        """Point the block back at its host copies; the device copies are freed once the compute stream is
        done with them (``record_stream``), or at once if never used."""
        if block.copies is None:
            return
        for tensor, host in zip(block.tensors, block.host, strict=True):
            tensor.data = host
        block.copies = None
        block.ready = None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for ring in self.rings:
            for block in ring:
                self._evict(block)
