"""The AR model's input video exactly as NVIDIA prepares it: float frames, never rounded before the tokenizer.

NVIDIA's ``utils/inference.py`` (``shared/spec/cosmos-ar.md`` section 2, input preparation) turns the
decoded uint8 frames into floats first (``/255*2-1``; images ``to_tensor`` then ``*2-1``, the same
float32 operations), pads to 33 frames by repeating the last one, and only then resizes with
torchvision's defaults to ``(ceil(s*h), ceil(s*w))``, ``s = max(W/w, H/h)``, and center-crops. On a float
tensor torchvision's resize is ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)``,
and it returns the frame untouched when it already has that size. Resizing uint8 frames with PIL and
rounding (what ``extract-frames`` writes, :func:`cosmos_cli.io.video.load_model_input`) moves the input by
up to a grey level, enough to flip FSQ tokens of the real tokenizer, so ``generate`` uses this path.
Padding is done after the resize here (the resize works frame by frame, so the order does not matter).
The geometry is :func:`cosmos_cli.io.video.cover_crop_geometry`'s, shared with ``extract-frames``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosmos_cli.io.video import SHORT_CLIP_HINT, ProgressFn, cover_crop_geometry, read_input_frames

MODEL_INPUT = "float-antialias-v1"
"""How ``generate`` prepares its input, in the re-run fingerprints: a video or a saved long-video chunk
made from the older uint8 input (PIL resize, rounded) is another request, never reused as this one."""


def to_model_range(frame: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [-1, 1], with NVIDIA's operations (``x/255*2-1``)."""
    frame = np.require(frame, np.uint8, ["C", "W"])  # a read-only decoded frame is copied, not aliased
    return torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0


def resize_cover_crop(frame: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float ``(3, h, w)`` -> ``(3, height, width)``: torchvision's antialiased bilinear resize to cover the
    target (skipped when the size already matches, as torchvision does), then its center crop."""
    g = cover_crop_geometry(frame.shape[-2], frame.shape[-1], height, width)
    if (g.resized_height, g.resized_width) != tuple(frame.shape[-2:]):
        size = (g.resized_height, g.resized_width)
        frame = F.interpolate(frame[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return frame[:, g.top : g.top + height, g.left : g.left + width].contiguous()


def model_frames(frames: list[np.ndarray] | np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` frames of any size -> float32 ``(N, 3, height, width)`` in [-1, 1], NVIDIA's way.

    Also what a long video feeds back (its own output frames, already ``height x width``: no resize, so
    exactly ``x/255*2-1``). Repeated frames (padding repeats one array) are converted once.
    """
    done: dict[int, torch.Tensor] = {}
    for frame in frames:
        if id(frame) not in done:
            done[id(frame)] = resize_cover_crop(to_model_range(frame), height, width)
    return torch.stack([done[id(frame)] for frame in frames])


def load_model_video(
    path: Path,
    num_frames: int,
    height: int,
    width: int,
    *,
    pad: bool = False,
    end_frame: int | None = None,
    on_progress: ProgressFn | None = None,
    short_hint: str = SHORT_CLIP_HINT,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The input frames as float32 ``(N, 3, height, width)`` in [-1, 1] and the description of
    :func:`cosmos_cli.io.video.load_model_input` (same frames, same checks, same errors)."""
    raw, info = read_input_frames(
        path, num_frames, height, width, pad=pad, end_frame=end_frame, on_progress=on_progress,
        short_hint=short_hint,
    )  # fmt: skip
    return model_frames(raw, height, width), info


def pad_video(frames: torch.Tensor, total_frames: int) -> torch.Tensor:
    """``(N, 3, H, W)`` -> the tokenizer's ``(1, 3, total_frames, H, W)``, repeating the last frame."""
    if frames.shape[0] < total_frames:
        frames = torch.cat([frames, frames[-1:].expand(total_frames - frames.shape[0], -1, -1, -1)])
    return frames.permute(1, 0, 2, 3)[None].contiguous()
