"""Temporal windows of the diffusion decoder (``dd/utils.py``): split the token grid, blend decoded pixels.

The decoder sees 8 latent frames at a time. Windows start every ``window - overlap`` frames
(``range(0, T - overlap, step)``) and a short last window is reflect-padded along time. After decoding,
consecutive windows are blended over ``overlap`` *pixel* frames with weights ``linspace(0, 1, overlap)``,
although they overlap by ``overlap`` *latent* frames (about 8x more pixel frames): a quirk of the
reference that we keep. With ``overlap=2`` the weights are (0, 1), so the "blend" is a hard cut.
"""

from __future__ import annotations

import torch

from cosmos_cli.errors import BadInput


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    return list(range(0, num_frames - overlap, window - overlap))


def _reflect_indices(length: int, target: int) -> list[int]:
    """Indices of ``F.pad(..., mode="reflect")`` along one axis, padding ``length`` frames to ``target``."""
    pad = target - length
    return list(range(length)) + [length - 2 - i for i in range(pad)]


def split_with_overlap(video: torch.Tensor, window: int, overlap: int = 2) -> list[torch.Tensor]:
    """``[B, C, T, H, W]`` -> windows of ``window`` frames; works for integer tensors on any device."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap {overlap} must be in [0, window={window})")
    total = video.shape[2]
    starts = window_starts(total, window, overlap)
    if not starts:
        raise BadInput(
            f"{total} latent frames are too few for the diffusion decoder",
            f"it needs more than {overlap} latent frames",
        )
    chunks = []
    for start in starts:
        length = min(window, total - start)
        if length == window:
            chunks.append(video[:, :, start : start + window])
            continue
        if window - length >= length:  # F.pad's reflect needs pad < size: the reference fails here too
            raise BadInput(
                f"{total} latent frames leave a last window of {length}, too short to pad to {window}",
                "use a latent length that fits the 8-frame windows (e.g. 5 latent frames = 33 frames)",
            )
        index = torch.tensor(_reflect_indices(length, window), device=video.device) + start
        chunks.append(video.index_select(2, index))
    return chunks


def linear_blend(videos: list[torch.Tensor], overlap: int) -> torch.Tensor:
    """``linear_blend_video_list``: concatenate ``[B, C, t, H, W]`` clips, cross-fading ``overlap`` frames.

    The output is float32 (the reference allocates it with ``torch.zeros``); blended frames are computed in
    the clips' dtype first, as there.
    """
    if len(videos) == 1:
        return videos[0]
    b, c, t, h, w = videos[0].shape
    if any(v.shape != videos[0].shape for v in videos):
        raise ValueError("all clips must have the same shape")
    n = len(videos)
    out = torch.zeros((b, c, n * t - overlap * (n - 1), h, w), device=videos[0].device)
    weights = torch.linspace(0, 1, steps=overlap, device=videos[0].device)
    out[:, :, : t - overlap] = videos[0][:, :, : t - overlap]
    pos = t - overlap
    for i in range(1, n):
        prev, cur = videos[i - 1], videos[i]
        for j in range(overlap):
            out[:, :, pos] = (1 - weights[j]) * prev[:, :, t - overlap + j] + weights[j] * cur[:, :, j]
            pos += 1
        end = t - overlap if i < n - 1 else t
        count = max(end - overlap, 0)
        out[:, :, pos : pos + count] = cur[:, :, overlap : overlap + count]
        pos += count
    return out
