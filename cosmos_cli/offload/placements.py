"""Where each stage lives between uses: ``gpu`` (resident), ``cpu`` (pinned host memory, moved to the GPU
only while it runs), ``stream`` (pinned host memory; while it runs only its non-block weights are on the GPU
and its repeated blocks are brought in one at a time: :mod:`cosmos_cli.offload.streaming`) or ``disk`` (read
when needed, freed after).

NVIDIA's "offload" is our ``disk``: it deletes each model and re-reads it for every sample. ``cpu`` costs
one host->device copy per stage per batch instead: the first time a stage is put away its weights are
copied into pinned host memory, and that copy is kept, so later put-aways only drop the GPU copy
(weights are read-only at inference) and later bring-ins are one DMA copy each. The pipeline asks
:meth:`Placements.use` for a stage and gets it on the compute device; what happens afterwards is decided
here, so stages and models know nothing about offloading.

Every :meth:`Placements.use` is measured (:class:`StageRecord`: seconds, bring-in and put-away seconds,
loads, moves, bytes moved, and on CUDA the peak allocated and reserved memory while the stage ran) so that
``offload-profile`` reads its table from a real pipeline run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch

from cosmos_cli.console import warn
from cosmos_cli.errors import BadInput
from cosmos_cli.memory import available_host_bytes, free_device_memory
from cosmos_cli.offload.streaming import BlockStream, detached, stage_blocks
from cosmos_cli.pipeline.stage import Stage

PLACEMENTS = ("gpu", "cpu", "disk", "stream")
STAGE_NAMES = (
    "text_guardrail",
    "text_encoder",
    "video_tokenizer",
    "ar_model",
    "diffusion_decoder",
    "video_guardrail",
)
"""The pipeline's stages in the order they run (the data-driven offload sequence)."""

NOT_STREAMABLE = {
    "ar_model": "use gpu or cpu for it: its decode step is captured as CUDA graphs over fixed weight addresses "
    "and reads every weight for each token, so streaming would be bound by the host link",
    "video_tokenizer": "use gpu or cpu for it: it is TorchScript without repeated blocks, and small",
}
"""Stages that cannot use ``stream`` placement, and what to use instead."""

HOST_HEADROOM = 0.9
"""Fraction of the host's available memory that parked weights may take; the rest is left to the OS."""
PAGE = 4096


def check_placement(stage: str, where: str) -> None:
    """Raise :class:`BadInput` for an unknown placement, or ``stream`` for a stage that cannot stream."""
    if where not in PLACEMENTS:
        raise BadInput(f"unknown placement {where!r} for {stage}", f"use one of {', '.join(PLACEMENTS)}")
    if where == "stream" and stage in NOT_STREAMABLE:
        raise BadInput(f"{stage} cannot use stream placement", NOT_STREAMABLE[stage])


def pinning_available() -> bool:
    """Page-locked memory needs a CUDA driver; without one host copies are ordinary memory."""
    return torch.cuda.is_available()


def host_bytes(nbytes: int, pinned: bool) -> int:
    """Host memory a copy of ``nbytes`` takes: PyTorch's pinned allocator rounds each block up to a power
    of two (a 86 MiB Llama MLP matrix takes 128 MiB), ordinary memory to a page."""
    nbytes = max(int(nbytes), 1)
    if pinned:
        return 1 << (nbytes - 1).bit_length()
    return -(-nbytes // PAGE) * PAGE


def pin_module(module: torch.nn.Module) -> None:
    """Move a module's tensors to page-locked host memory, so GPU copies are fast and asynchronous (left
    in ordinary memory where pinning is unavailable or exhausted: slower copies, same results)."""
    module.to("cpu")
    if not pinning_available():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        if not tensor.is_pinned():
            with contextlib.suppress(RuntimeError):
                tensor.data = tensor.data.pin_memory()


def named_parameters(stage: Stage) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """Every parameter of the stage's modules, keyed ``"<module index>.<name>"`` (tied weights once)."""
    for index, module in enumerate(stage.modules()):
        for name, param in module.named_parameters():
            yield f"{index}.{name}", param


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class StageRecord:
    """What one stage cost over every :meth:`Placements.use` so far (a batch: usually one use)."""

    name: str
    placement: str
    uses: int = 0
    seconds: float = 0.0
    """Wall time inside ``use``: bring-in, the stage's work and put-away, device-synchronised."""
    bring_in_seconds: float = 0.0
    """Loading from disk (``loads``) or copying from host memory (``moves``)."""
    put_away_seconds: float = 0.0
    """Parking in host memory or freeing (``disk``)."""
    loads: int = 0
    moves: int = 0
    """Host -> device copies of the whole stage (``stream``: of its non-block weights)."""
    block_copies: int = 0
    """``stream``: blocks brought in one at a time (every block, every forward pass)."""
    bytes_moved: int = 0
    """Bytes copied host -> device (``stream``: the non-block weights once per use plus every block copy)."""
    peak_allocated: int = 0
    """Most GPU memory allocated by tensors while the stage was in (other stages' residents included)."""
    peak_reserved: int = 0
    """Most GPU memory held by PyTorch's caching allocator meanwhile (what the card must have)."""
    resident_before: int = 0
    """GPU memory allocated when the stage started: the other stages' resident weights."""

    def as_dict(self) -> dict:
        return asdict(self)


class Placements:
    """Runs stages on ``device`` under a per-stage placement policy, measuring each use.

    ``offload`` says whether placements apply: by default only on CUDA, where host and device memory
    differ; tests pass ``offload=True`` to exercise the moves on a CPU-only machine.
    """

    def __init__(self, device: torch.device, policy: dict[str, str] | None = None, *, offload: bool | None = None):
        self.device = torch.device(device)
        self.policy = dict.fromkeys(STAGE_NAMES, "gpu") | (policy or {})
        for name, where in self.policy.items():
            check_placement(name, where)
        self.offload = self.device.type == "cuda" if offload is None else offload
        self.records: dict[str, StageRecord] = {}
        self._parked: set[str] = set()
        self._host: dict[str, dict[str, tuple[torch.Tensor, int | None]]] = {}
        """Per stage: parameter key -> (host copy, data_ptr of the device copy made from it at bring-in)."""
        self._streams: dict[str, BlockStream] = {}
        """``stream`` stages in use: the hooks bringing their blocks in."""

    @property
    def moves(self) -> dict[str, int]:
        return {name: record.moves for name, record in self.records.items()}

    def placement(self, stage: Stage) -> str:
        if not self.offload:
            return "gpu"  # one memory: nothing to move
        return self.policy.get(stage.name, "gpu")

    def reset_records(self) -> None:
        self.records.clear()

    # ---- running a stage -----------------------------------------------------------------------
    @contextlib.contextmanager
    def use(self, stage: Stage) -> Iterator[Stage]:
        """The stage, loaded on the compute device for the duration of the block."""
        where = self.placement(stage)
        record = self.records.setdefault(stage.name, StageRecord(stage.name, where))
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            record.resident_before = max(record.resident_before, torch.cuda.memory_allocated(self.device))
        start = time.perf_counter()
        self._bring_in(stage, record)
        self._sync()
        record.bring_in_seconds += time.perf_counter() - start
        try:
            yield stage
        finally:
            self._sync()
            if self.device.type == "cuda":
                record.peak_allocated = max(record.peak_allocated, torch.cuda.max_memory_allocated(self.device))
                record.peak_reserved = max(record.peak_reserved, torch.cuda.max_memory_reserved(self.device))
            put_away = time.perf_counter()
            streaming = self._streams.pop(stage.name, None)
            if streaming is not None:
                streaming.close()
                record.block_copies += streaming.copies
                record.bytes_moved += streaming.bytes
            where = self.placement(stage)
            if where in ("cpu", "stream"):
                self._park(stage)
            elif where == "disk":
                self._drop(stage)
            self._sync()
            end = time.perf_counter()
            record.put_away_seconds += end - put_away
            record.seconds += end - start
            record.uses += 1
            record.placement = self.placement(stage)

    def prepare(self, stage: Stage) -> None:
        """Bring a stage to its between-uses state now: ``gpu`` loaded, ``cpu`` and ``stream`` loaded and
        parked in host memory (``stream`` loads on the host: the stage need not fit on the GPU), ``disk``
        nothing. A server does this at start-up so the first request pays no load."""
        where = self.placement(stage)
        if where == "disk" or stage.name in self._parked:
            return
        if not stage.loaded:
            stage.load(torch.device("cpu") if where == "stream" else self.device)
            self.records.setdefault(stage.name, StageRecord(stage.name, where)).loads += 1
        if where in ("cpu", "stream"):
            self._park(stage)

    def release(self, stage: Stage) -> None:
        """Free a stage that will not run again in this process (GPU and host copies)."""
        if stage.loaded:
            self._drop(stage)

    # ---- moves ---------------------------------------------------------------------------------
    def _bring_in(self, stage: Stage, record: StageRecord) -> None:
        if self.placement(stage) == "stream":
            self._stream_in(stage, record)
        elif stage.name in self._parked:
            record.bytes_moved += self._fetch(stage)
            record.moves += 1
        elif not stage.loaded:
            stage.load(self.device)
            record.loads += 1

    def _fetch(self, stage: Stage, blocks: list | None = None) -> int:
        """Host copy -> device; remembers which device tensor each kept host copy became. ``blocks``: block
        lists left on their host copies (``stream``), which the put-away then recognises alike. Returns the
        bytes moved."""
        host = {key: param.data for key, param in named_parameters(stage)}
        with detached(blocks or [], stage.modules()):
            moved = tensor_bytes(param for _, param in named_parameters(stage))
            stage.to(self.device)
        cache = self._host.setdefault(stage.name, {})
        for key, param in named_parameters(stage):
            if key in host:
                cache[key] = (host[key], param.data_ptr())
        self._parked.discard(stage.name)
        return moved

    def _stream_in(self, stage: Stage, record: StageRecord) -> None:
        """``stream``: the non-block weights to the device, hooks on the blocks (which stay on their host
        copies until they run). A stage seen for the first time is loaded on the host and parked first."""
        if stage.name not in self._parked:
            if not stage.loaded:
                stage.load(torch.device("cpu"))
                record.loads += 1
            self._park(stage)
            if self.placement(stage) != "stream":  # no room in host memory: fell back to disk
                stage.load(self.device)
                record.loads += 1
                return
        containers = stage_blocks(stage)
        record.bytes_moved += self._fetch(stage, containers)
        record.moves += 1
        self._streams[stage.name] = BlockStream(containers, self.device)

    def _park(self, stage: Stage) -> None:
        """Device -> host. A parameter whose device tensor is still the one made from a kept host copy goes
        back to that copy without a transfer (weights are read-only at inference); others are copied into
        fresh pinned memory. Buffers (caches, tables) are copied each time by ``stage.to``, which also lets
        the stage drop device-only state (the AR model's KV cache and CUDA graphs)."""
        cache = self._host.setdefault(stage.name, {})
        pinned = pinning_available()
        reuse: dict[str, torch.Tensor] = {}
        need = 0
        for key, param in named_parameters(stage):
            kept = cache.get(key)
            if kept is not None and kept[1] == param.data_ptr() and kept[0].shape == param.shape:
                reuse[key] = kept[0]
            else:
                need += host_bytes(param.numel() * param.element_size(), pinned)
        if need > HOST_HEADROOM * available_host_bytes():
            warn(
                f"{stage.name}: {need / 2**30:.1f} GiB does not fit in free host memory; "
                "falling back to disk placement (re-read for the next batch)"
            )
            self.policy[stage.name] = "disk"
            self._drop(stage)
            return
        with torch.no_grad():
            for key, param in named_parameters(stage):
                copy = reuse.get(key)
                if copy is None:
                    copy = _host_copy(param.data, pinned)
                    cache[key] = (copy, None)
                param.data = copy
        stage.to(torch.device("cpu"))
        self._sync()  # stage.to copies buffers asynchronously
        for module in stage.modules():
            pin_module(module)  # buffers that stage.to left in ordinary memory
        self._parked.add(stage.name)
        free_device_memory()

    def _drop(self, stage: Stage) -> None:
        streaming = self._streams.pop(stage.name, None)
        if streaming is not None:
            streaming.close()
        stage.unload()
        self._parked.discard(stage.name)
        self._host.pop(stage.name, None)
        free_device_memory()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _host_copy(tensor: torch.Tensor, pinned: bool) -> torch.Tensor:
    """A host copy of a device tensor, page-locked where possible (ordinary memory if pinning fails)."""
    if pinned:
        try:
            return torch.empty_like(tensor, device="cpu", pin_memory=True).copy_(tensor)
        except RuntimeError:  # page-locked memory exhausted: slower copies, same result
            pass
    return tensor.to("cpu", copy=True)


