"""``extract-frames`` as a library: plan (cheap checks), then run (decode, resize, write atomically).

Splitting the two lets the command validate every argument and the output location before a long decode
starts, and size its progress bar; nothing here prints. The frames themselves come from
:func:`cosmos_cli.io.video.load_model_input`, the same function ``generate`` uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_cli import __version__
from cosmos_cli.errors import BadInput
from cosmos_cli.io.atomic import atomic_path, check_writable
from cosmos_cli.io.video import (
    ProgressFn,
    VideoProbe,
    check_mp4_size,
    encode_mp4,
    input_kind,
    load_model_input,
    probe_video,
)

MP4_CRF = 5
"""libx264 CRF 5: visually lossless, still baseline-playable; these are 1-9 frames, size is moot."""

IMAGE_FPS = 25.0
"""Frame rate written for an mp4 made from a still image (the reference writes its videos at 25)."""


def output_format(output: Path) -> str:
    """``mp4``, ``npy`` or ``png`` (a folder of PNGs), chosen from the output name."""
    suffix = output.suffix.lower()
    if suffix == ".mp4":
        return "mp4"
    if suffix == ".npy":
        return "npy"
    if suffix == "" or output.is_dir():
        return "png"
    raise BadInput(
        f"--output {output}: unknown output type '{suffix}'",
        "end it in .mp4 or .npy, or give a folder name without a dot for PNG frames",
    )


def sidecar_path(output: Path) -> Path:
    """``<output>.json``: next to the output, never inside a PNG folder, so the folder holds only frames."""
    return output.with_name(output.name + ".json")


def end_frame_for_time(seconds: float, fps: float, path: Path) -> int:
    """The last frame whose display starts before ``seconds``: ``ceil(seconds * fps) - 1``.

    So ``--end-time`` equal to the clip's duration selects its last frame, as the default does. Uses the
    nominal fps: exact for constant-frame-rate clips, approximate for variable ones (use ``--end-frame``).
    """
    if not seconds > 0:
        raise BadInput(f"--end-time must be more than 0 seconds, got {seconds}", "pass a time inside the clip")
    if not fps > 0:
        raise BadInput(f"{path}: ffmpeg reports no frame rate, so --end-time cannot be used", "use --end-frame")
    return max(0, math.ceil(seconds * fps - 1e-9) - 1)


@dataclass(frozen=True)
class ExtractPlan:
    """Everything checked before decoding: the input's kind, the window and where the outputs go."""

    source: Path
    kind: str
    probe: VideoProbe | None
    output: Path
    sidecar: Path
    fmt: str
    num_frames: int
    height: int
    width: int
    pad: bool
    end_frame: int | None
    end_time: float | None
    overwrite: bool

    @property
    def frames_to_decode(self) -> int | None:
        """How many frames the decoder will read (for a progress bar); None for images or unknown."""
        if self.kind != "video":
            return None
        if self.end_frame is not None:
            return self.end_frame + 1
        return self.probe.frame_estimate if self.probe else None


def plan_extract(
    source: Path,
    output: Path,
    *,
    num_frames: int = 9,
    height: int = 640,
    width: int = 1024,
    pad: bool = False,
    end_frame: int | None = None,
    end_time: float | None = None,
    overwrite: bool = False,
) -> ExtractPlan:
    """Check the input, the options and the output names without decoding anything.

    Raises :class:`BadInput` for a missing/empty/unsupported input, conflicting window options, an output
    type or location we cannot write, or an existing output without ``overwrite``.
    """
    source, output = Path(source), Path(output)
    kind = input_kind(source)
    fmt = output_format(output)
    if height < 1 or width < 1:
        raise BadInput(f"output size {height}x{width} is empty", "pass positive --height and --width")
    if fmt == "mp4":
        check_mp4_size(output, height, width)
    if end_frame is not None and end_time is not None:
        raise BadInput("--end-frame and --end-time both given", "pass only one of them")
    if kind == "image" and (end_frame is not None or end_time is not None):
        raise BadInput(f"{source} is an image; --end-frame/--end-time only apply to videos", "drop them")
    if end_frame is not None and end_frame < 0:
        raise BadInput(f"--end-frame must be 0 or more, got {end_frame}", "frames are numbered from 0")
    sidecar = sidecar_path(output)
    check_writable(output, overwrite)
    check_writable(sidecar, overwrite)
    probe = probe_video(source) if kind == "video" else None
    if end_time is not None:
        end_frame = end_frame_for_time(end_time, probe.fps, source)
    return ExtractPlan(
        source,
        kind,
        probe,
        output,
        sidecar,
        fmt,
        num_frames,
        height,
        width,
        pad,
        end_frame,
        end_time,
        overwrite,
    )


@dataclass(frozen=True)
class ExtractResult:
    frames: np.ndarray
    sidecar: dict[str, Any]
    output: Path
    sidecar_path: Path


def _write_pngs(frames: np.ndarray, folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    for position, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{position:04d}.png")


def run_extract(plan: ExtractPlan, on_progress: ProgressFn | None = None) -> ExtractResult:
    """Decode, resize and crop, then write the frames and the sidecar; both appear only if both succeed.

    The atomic staging folders are created before decoding, so an unwritable output location fails fast.
    """
    with (
        atomic_path(plan.output, plan.overwrite) as out_temp,
        atomic_path(plan.sidecar, plan.overwrite) as js,
    ):
        frames, info = load_model_input(
            plan.source,
            plan.num_frames,
            plan.height,
            plan.width,
            pad=plan.pad,
            end_frame=plan.end_frame,
            on_progress=on_progress,
        )
        fps = info["source_fps"] or IMAGE_FPS
        if plan.fmt == "mp4":
            encode_mp4(frames, out_temp, fps, crf=MP4_CRF)
        elif plan.fmt == "npy":
            with open(out_temp, "wb") as handle:  # a handle, so np.save never appends its own suffix
                np.save(handle, frames)
        else:
            _write_pngs(frames, out_temp)
        sidecar = {
            "cosmos_cli_version": __version__,
            **info,
            "requested_frames": plan.num_frames,
            "end_frame": plan.end_frame,
            "end_time": plan.end_time,
            "output": {
                "path": str(plan.output.resolve()),
                "format": plan.fmt,
                "frames": int(frames.shape[0]),
                "height": int(frames.shape[1]),
                "width": int(frames.shape[2]),
                "fps": fps if plan.fmt == "mp4" else None,
            },
        }
        js.write_text(json.dumps(sidecar, indent=2) + "\n")
    return ExtractResult(frames, sidecar, plan.output, plan.sidecar)
