"""The contract every pipeline stage follows, so that offloading and profiling treat them alike.

A stage owns one or more ``nn.Module``s read from the checkpoint tree. The pipeline, not the stage,
decides where the stage lives between uses (``cosmos_cli.offload.placements``): resident on the GPU,
parked in pinned host memory, or dropped and re-read from disk.
"""

from __future__ import annotations

import abc

import torch


class Stage(abc.ABC):
    """One pipeline step (text guardrail, T5, video tokenizer, AR model, diffusion decoder, ...)."""

    name: str = "stage"

    @abc.abstractmethod
    def load(self, device: torch.device) -> None:
        """Read weights from disk and place them on ``device``. Idempotent when already loaded."""

    @abc.abstractmethod
    def modules(self) -> list[torch.nn.Module]:
        """The loaded modules (empty when not loaded); offloading moves exactly these."""

    def unload(self) -> None:
        """Drop every module so that its memory is freed (``disk`` placement)."""
        self._drop()

    @abc.abstractmethod
    def _drop(self) -> None:
        """Forget the loaded modules."""

    @property
    def loaded(self) -> bool:
        return bool(self.modules())

    def to(self, device: torch.device) -> None:
        """Move the resident modules (``cpu`` placement: pinned host memory <-> GPU)."""
        for module in self.modules():
            module.to(device, non_blocking=True)

    def param_bytes(self) -> int:
        """Bytes of parameters and buffers currently held (for memory planning and reports)."""
        total = 0
        for module in self.modules():
            for t in list(module.parameters()) + list(module.buffers()):
                total += t.numel() * t.element_size()
        return total
