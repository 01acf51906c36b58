"""Where each stage lives between uses: ``gpu`` (resident), ``cpu`` (pinned host memory, moved to the GPU
only while it runs) or ``disk`` (read when needed, freed after).

NVIDIA's "offload" is our ``disk``: it deletes each model and re-reads it for every sample. ``cpu`` costs
one host<->device copy per stage per batch instead. The pipeline asks :meth:`Placements.use` for a stage
and gets it on the compute device; what happens afterwards is decided here, so stages and models know
nothing about offloading.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

import torch

from cosmos_cli.console import warn
from cosmos_cli.errors import BadInput
from cosmos_cli.pipeline.stage import Stage

PLACEMENTS = ("gpu", "cpu", "disk")
STAGE_NAMES = (
    "text_guardrail",
    "text_encoder",
    "video_tokenizer",
    "ar_model",
    "diffusion_decoder",
    "video_guardrail",
)
"""The pipeline's stages in the order they run (the data-driven offload sequence)."""


def available_host_bytes() -> int:
    """MemAvailable from /proc/meminfo (free + reclaimable), or free pages where that is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def pin_module(module: torch.nn.Module) -> None:
    """Move a module's tensors to page-locked host memory, so GPU copies are fast and asynchronous."""
    module.to("cpu")
    for tensor in list(module.parameters()) + list(module.buffers()):
        if not tensor.is_pinned():
            tensor.data = tensor.data.pin_memory()


class Placements:
    """Runs stages on ``device`` under a per-stage placement policy."""

    def __init__(self, device: torch.device, policy: dict[str, str] | None = None):
        self.device = torch.device(device)
        self.policy = dict.fromkeys(STAGE_NAMES, "gpu") | (policy or {})
        for name, where in self.policy.items():
            if where not in PLACEMENTS:
                raise BadInput(f"unknown placement {where!r} for {name}", f"use one of {', '.join(PLACEMENTS)}")
        self.moves: dict[str, int] = {}

    def placement(self, stage: Stage) -> str:
        if self.device.type != "cuda":
            return "gpu"  # one memory: nothing to move
        return self.policy.get(stage.name, "gpu")

    @contextlib.contextmanager
    def use(self, stage: Stage) -> Iterator[Stage]:
        """The stage, loaded on the compute device for the duration of the block."""
        where = self.placement(stage)
        if stage.loaded:
            if where == "cpu":
                stage.to(self.device)
                self.moves[stage.name] = self.moves.get(stage.name, 0) + 1
        else:
            stage.load(self.device)
        try:
            yield stage
        finally:
            if where == "cpu":
                self._park_in_host_memory(stage)
            elif where == "disk":
                stage.unload()
                _free_device_memory()

    def _park_in_host_memory(self, stage: Stage) -> None:
        need = stage.param_bytes()
        if need > 0.9 * available_host_bytes():
            warn(
                f"{stage.name}: {need / 2**30:.1f} GiB does not fit in free host memory; "
                "falling back to disk placement (re-read for the next batch)"
            )
            self.policy[stage.name] = "disk"
            stage.unload()
        else:
            for module in stage.modules():
                pin_module(module)
            if hasattr(stage, "device"):
                stage.device = torch.device("cpu")
        _free_device_memory()

    def release(self, stage: Stage) -> None:
        """Free a stage that will not run again in this process."""
        if stage.loaded:
            stage.unload()
            _free_device_memory()


def _free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
