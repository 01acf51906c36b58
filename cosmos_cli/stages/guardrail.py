"""The guardrail as two pipeline stages: one on the prompt before generation, one on the frames after.

Modes (``--guardrail``): ``full`` runs NVIDIA's four checks; ``blocklist`` runs only the keyword blocklist
on the prompt and skips the video stage entirely (no classifier, no face pixelation), for machines that
cannot hold the 7B Aegis model; ``off`` runs nothing (the CLI prints ``GUARDRAIL_OFF_WARNING``).

Unlike NVIDIA's pipeline, which treats a crashing check as a pass, a check that raises blocks
(``GuardrailBlocked`` naming the error): a guardrail that cannot decide must not let content through.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cosmos_cli.errors import CheckpointMismatch, CosmosError, GuardrailBlocked
from cosmos_cli.guardrail.availability import GUARDRAIL_MODES
from cosmos_cli.guardrail.layout import GuardrailLayout
from cosmos_cli.stages.base import Stage

PROMPT_EXIT_CODE = 3
VIDEO_EXIT_CODE = 4


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _checked_mode(mode: str) -> str:
    if mode not in GUARDRAIL_MODES:
        raise ValueError(f"guardrail mode must be one of {GUARDRAIL_MODES}, not {mode!r}")
    return mode


def _load_or_explain(what: str, loader: Callable):
    """Run a loader; a file that exists but cannot be read becomes a one-line re-download hint."""
    try:
        return loader()
    except (CosmosError, torch.cuda.OutOfMemoryError, MemoryError):
        raise  # already explained, or not a file problem
    except Exception as err:  # noqa: BLE001 - any reader failure means the files are unusable
        raise CheckpointMismatch(
            f"cannot load the guardrail {what}: {_one_line(f'{type(err).__name__}: {err}')}",
            "re-run: cosmos-cli download 5b-video2world",
        ) from err


def _run_check(subject: str, check: str, exit_code: int, fn: Callable, *args):
    """Call one check; its exception becomes a block naming it (fail closed)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - whatever failed, the content was not cleared
        reason = _one_line(f"check failed: {type(err).__name__}: {err}")
        raise GuardrailBlocked(f"guardrail blocked the {subject} ({check}: {reason})", exit_code) from err


class TextGuardrailStage(Stage):
    """Blocklist, then (mode ``full``) Aegis, on the raw prompt; stops at the first check that blocks."""

    name = "text_guardrail"
    loaded_attrs = ("_aegis",)
    """The blocklist (word lists, no module) is kept across ``unload``."""

    def __init__(self, guardrail_dir: Path, mode: str = "full") -> None:
        self.layout = GuardrailLayout(Path(guardrail_dir))
        self.mode = _checked_mode(mode)
        self._blocklist = None
        self._aegis = None

    def _load(self, device: torch.device) -> None:
        if self.mode == "off":
            return
        if self._blocklist is None:
            from cosmos_cli.guardrail.blocklist import Blocklist

            blocklist = _load_or_explain("blocklist", lambda: Blocklist(self.layout.blocklist_dir))
            # nltk reads WordNet and punkt lazily: touch them now so missing data fails here, not mid-check.
            _load_or_explain("nltk data", lambda: blocklist.lemmatise("warm up"))
            self._blocklist = blocklist
        if self.mode == "full" and self._aegis is None:
            from cosmos_cli.guardrail.aegis import Aegis

            self._aegis = _load_or_explain("Aegis model", lambda: Aegis.load(self.layout, device))

    def modules(self) -> list[torch.nn.Module]:
        return [self._aegis.model] if self._aegis is not None else []

    def check(self, prompt: str) -> None:
        """Return if the prompt may be used; raise ``GuardrailBlocked`` (exit 3) otherwise."""
        if self.mode == "off":
            return
        if self._blocklist is None or (self.mode == "full" and self._aegis is None):
            raise RuntimeError("TextGuardrailStage.check() called before load()")
        checks = [("blocklist", self._blocklist.is_safe)]
        if self.mode == "full":
            checks.append(("aegis", self._aegis.is_safe))
        for check, is_safe in checks:
            safe, message = _run_check("prompt", check, PROMPT_EXIT_CODE, is_safe, prompt)
            if not safe:
                raise GuardrailBlocked(
                    f"guardrail blocked the prompt ({check}: {_one_line(message)})", PROMPT_EXIT_CODE
                )


class VideoGuardrailStage(Stage):
    """Content classifier on every frame, then face pixelation; mode ``full`` only (else a pass-through)."""

    name = "video_guardrail"
    loaded_attrs = ("_content", "_faces")

    def __init__(self, guardrail_dir: Path, mode: str = "full") -> None:
        self.layout = GuardrailLayout(Path(guardrail_dir))
        self.mode = _checked_mode(mode)
        self._content = None
        self._faces = None

    @property
    def active(self) -> bool:
        return self.mode == "full"

    def _load(self, device: torch.device) -> None:
        if not self.active:
            return
        if self._content is None:
            from cosmos_cli.guardrail.video_filter import VideoContentFilter

            self._content = _load_or_explain("video classifier", lambda: VideoContentFilter.load(self.layout, device))
        if self._faces is None:
            from cosmos_cli.guardrail.face_blur import FaceBlurFilter, load_retinaface

            net = _load_or_explain("face detector", lambda: load_retinaface(self.layout.retinaface, device))
            self._faces = FaceBlurFilter(net)

    def modules(self) -> list[torch.nn.Module]:
        modules = []
        if self._content is not None:
            modules += [self._content.encoder, self._content.classifier]
        if self._faces is not None:
            modules.append(self._faces.net)
        return modules

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """(frames with faces pixelated, number of faces pixelated); ``GuardrailBlocked`` (exit 4) if unsafe.

        ``frames`` is the decoded video, uint8 ``(T, H, W, 3)`` RGB; it is not modified.
        """
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError("VideoGuardrailStage.run() expects a uint8 (T, H, W, 3) numpy array")
        if not self.active:
            return frames, 0
        if self._content is None or self._faces is None:
            raise RuntimeError("VideoGuardrailStage.run() called before load()")
        unsafe = _run_check("video", "video_content_safety_filter", VIDEO_EXIT_CODE, self._content.first_unsafe, frames)
        if unsafe is not None:
            index, class_name = unsafe
            raise GuardrailBlocked(
                f"guardrail blocked the video (video_content_safety_filter: frame {index} classified as {class_name})",
                VIDEO_EXIT_CODE,
            )
        return _run_check("video", "face_blur_filter", VIDEO_EXIT_CODE, self._faces.run, frames)
