"""The contract every pipeline stage follows, so that offloading and profiling treat them alike.

A stage owns one or more ``nn.Module``s read from the checkpoint tree. The pipeline, not the stage,
decides where the stage lives between uses (``cosmos_cli.offload.placements``): resident on the GPU,
parked in pinned host memory, or dropped and re-read from disk.

The base does what every stage did alike: ``load`` checks the files, then loads once (a loaded stage is
moved instead), ``to`` moves the modules and remembers the device, ``unload`` forgets what ``load`` made
(the attributes named in ``loaded_attrs``), ``require_loaded`` stops a use before ``load``. A stage says
only what is its own: ``require_files``, ``_load`` and, where they are not plain attributes, ``modules``.
"""

from __future__ import annotations

import abc

import torch

STAGE_NAMES = (
    "text_guardrail",
    "text_encoder",
    "video_tokenizer",
    "ar_model",
    "diffusion_decoder",
    "video_guardrail",
)
"""The pipeline's stages in the order they run (``shared/spec/cosmos-ar.md`` section 3.2), declared once: the
recipe's :meth:`~cosmos_cli.pipeline.pipeline.VideoPipeline.stages`, the placements' defaults and the plan's
:func:`~cosmos_cli.offload.plan.stage_sizes` all follow it."""


class Stage(abc.ABC):
    """One pipeline step (text guardrail, T5, video tokenizer, AR model, diffusion decoder, ...)."""

    name: str = "stage"
    device: torch.device = torch.device("cpu")
    """Where the modules are (set by ``load`` and ``to``)."""
    loaded_attrs: tuple[str, ...] = ()
    """Attributes holding what ``_load`` made (modules, tokenizers, ...): ``unload`` sets them to None, and
    the ``nn.Module``s among them are the stage's :meth:`modules`."""

    def load(self, device: torch.device) -> None:
        """Read weights from disk and place them on ``device``; a loaded stage is moved there instead."""
        device = torch.device(device)
        if self.loaded:
            self.to(device)
            return
        self.require_files()
        self.device = device
        self._load(device)

    def require_files(self) -> None:
        """Raise a one-line error naming each missing file, before anything is read (none by default)."""
        return

    @abc.abstractmethod
    def _load(self, device: torch.device) -> None:
        """Build the stage's modules on ``device`` (not loaded yet; its files are present)."""

    def modules(self) -> list[torch.nn.Module]:
        """The loaded modules (empty when not loaded); offloading moves exactly these."""
        held = (getattr(self, attr, None) for attr in self.loaded_attrs)
        return [m for m in held if isinstance(m, torch.nn.Module)]

    def unload(self) -> None:
        """Drop every module so that its memory is freed (``disk`` placement)."""
        for attr in self.loaded_attrs:
            setattr(self, attr, None)

    @property
    def loaded(self) -> bool:
        return bool(self.modules())

    def require_loaded(self, use: str = "") -> None:
        """Raise if the stage is used (``use``: the method, for the message) before ``load``."""
        if not self.loaded:
            raise RuntimeError(f"{type(self).__name__}{'.' + use if use else ''} used before load()")

    def to(self, device: torch.device) -> None:
        """Move the resident modules (``cpu`` placement: pinned host memory <-> GPU)."""
        for module in self.modules():
            module.to(device, non_blocking=True)
        self.device = torch.device(device)

    def param_bytes(self) -> int:
        """Bytes of parameters and buffers currently held (for memory planning and reports)."""
        total = 0
        for module in self.modules():
            for t in list(module.parameters()) + list(module.buffers()):
                total += t.numel() * t.element_size()
        return total
