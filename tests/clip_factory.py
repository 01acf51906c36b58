"""Synthetic clips whose frames say which frame they are, for the video I/O and extract-frames tests.

Each frame is three full-height vertical bands of flat grey; band ``k`` carries one base-16 digit of the
frame's index as grey level ``16 * digit + 8``. Flat regions survive H.264 within a few grey levels and
full-height bands survive any cover-resize + center crop (portrait clips lose rows, landscape ones a few
columns), so :func:`frame_index` reads the index back exactly from an extracted frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

SHARED = Path(os.environ.get("COSMOS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
CLIPS = SHARED / "data" / "clips"


def indexed_frame(index: int, width: int, height: int) -> np.ndarray:
    digits = (index // 256 % 16, index // 16 % 16, index % 16)
    frame = np.empty((height, width, 3), np.uint8)
    edges = [0, width // 3, 2 * width // 3, width]
    for band, digit in enumerate(digits):
        frame[:, edges[band] : edges[band + 1]] = 16 * digit + 8
    return frame


def frame_index(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`indexed_frame` (up to 4095) from a decoded, resized frame."""
    height, width = frame.shape[:2]
    index = 0
    for x in (width // 6, width // 2, 5 * width // 6):
        patch = frame[height // 2 - 2 : height // 2 + 3, x - 2 : x + 3].astype(np.float64)
        index = index * 16 + int(np.clip(round((patch.mean() - 8) / 16), 0, 15))
    return index


def make_clip(path: Path, num_frames: int, width: int, height: int, fps: float = 25) -> Path:
    """An H.264 mp4 of ``num_frames`` indexed frames, written frame by frame through imageio."""
    writer = imageio.get_writer(
        path, fps=fps, codec="libx264", quality=8, macro_block_size=1, ffmpeg_log_level="error"
    )
    try:
        for index in range(num_frames):
            writer.append_data(indexed_frame(index, width, height))
    finally:
        writer.close()
    return path
