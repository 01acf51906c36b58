"""Face pixelation on generated frames: RetinaFace-R50 detections, each face replaced by 5x5 blocks.

NVIDIA's ``RetinaFaceFilter`` settings: RGB->BGR, minus BGR means (104, 117, 123), fp32; faces with score
> 0.7, NMS at 0.4 after keeping the 5000 best, at most 750 per frame; faces under 20x20 pixels are left
alone; each face is shrunk to 5x5 with bilinear sampling and blown back up with nearest-neighbour.

Where this differs from NVIDIA's code: boxes are clipped to the frame *before* the 20-pixel test and empty
boxes are skipped (NVIDIA tests first, so a box lying outside the frame reaches ``cv2.resize`` empty and
crashes).
The resampling is numpy instead of OpenCV: the same fixed-point ``INTER_LINEAR`` / ``INTER_NEAREST``
arithmetic, identical to opencv-python-headless 5.0 on 400 test regions (OpenCV itself is not a dependency).
Frames go through the detector in batches rather than one at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from cosmos_cli.guardrail.retinaface import RE50_CONFIG, RetinaFace, decode_boxes, nms, prior_boxes
from cosmos_cli.models.state_dict import check_state_dict

CONFIDENCE_THRESHOLD = 0.7
NMS_THRESHOLD = 0.4
TOP_K = 5000
KEEP_TOP_K = 750
MIN_FACE_SIZE = 20
PIXEL_BLOCKS = 5
BGR_MEANS = (104.0, 117.0, 123.0)
BATCH_FRAMES = 8


RESIZE_COEF_BITS = 11
"""OpenCV's ``INTER_RESIZE_COEF_BITS``: uint8 bilinear weights are 11-bit fixed point."""


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.INTER_LINEAR`` taps along one axis: left and right source index, their fixed-point weights.

    Sample positions are computed in float32 and clamped at the borders as in OpenCV's ``resize``.
    """
    pos = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    left = np.floor(pos).astype(np.int64)
    frac = (pos - left).astype(np.float32)
    before = left < 0
    frac[before], left[before] = 0, 0
    after = left >= src - 1
    frac[after], left[after] = 0, src - 1
    one = np.float32(1 << RESIZE_COEF_BITS)
    w_right = np.rint(frac * one).astype(np.int64)
    w_left = np.rint((np.float32(1) - frac) * one).astype(np.int64)
    return left, np.minimum(left + 1, src - 1), w_left, w_right


def pixelate(region: np.ndarray, blocks: int = PIXEL_BLOCKS) -> np.ndarray:
    """NVIDIA's ``pixelate_face`` on a uint8 (H, W, C) region, without OpenCV.

    ``cv2.resize(region, (blocks, blocks), INTER_LINEAR)`` in OpenCV's integer arithmetic (horizontal pass,
    then the vertical pass with its rounding shifts), then ``INTER_NEAREST`` back up, which maps destination
    pixel d to source ``floor(d * blocks / size)``.
    """
    h, w = region.shape[:2]
    top, bottom, w_top, w_bottom = _linear_taps(h, blocks)
    left, right, w_left, w_right = _linear_taps(w, blocks)
    data = region.astype(np.int64)
    rows = data[:, left] * w_left[None, :, None] + data[:, right] * w_right[None, :, None]
    small = ((w_top[:, None, None] * (rows[top] >> 4)) >> 16) + ((w_bottom[:, None, None] * (rows[bottom] >> 4)) >> 16)
    small = np.clip((small + 2) >> 2, 0, 255).astype(region.dtype)
    return small[(np.arange(h) * blocks) // h][:, (np.arange(w) * blocks) // w]


def pixelate_boxes(frame: np.ndarray, boxes: np.ndarray, min_size: int = MIN_FACE_SIZE) -> int:
    """Pixelate each (x1, y1, x2, y2) box of ``frame`` in place, in order; return how many were pixelated.

    Coordinates are truncated to ints as NVIDIA does, then clipped to the frame; boxes narrower or shorter
    than ``min_size`` after clipping (including those wholly outside the frame) are skipped.
    """
    height, width = frame.shape[:2]
    count = 0
    for box in boxes:
        x1, y1, x2, y2 = (int(v) for v in box)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 - x1 < min_size or y2 - y1 < min_size:
            continue
        frame[y1:y2, x1:x2] = pixelate(frame[y1:y2, x1:x2])
        count += 1
    return count


def select_faces(boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Pytorch_Retinaface's detection filtering for one frame: threshold, top-k, NMS, keep-top-k."""
    keep = scores > CONFIDENCE_THRESHOLD
    boxes, scores = boxes[keep], scores[keep]
    order = torch.argsort(scores, descending=True, stable=True)[:TOP_K]
    boxes, scores = boxes[order], scores[order]
    return boxes[nms(boxes, scores, NMS_THRESHOLD)][:KEEP_TOP_K]


def load_retinaface(path, device: torch.device) -> RetinaFace:
    """Read ``Resnet50_Final.pth`` (optionally under ``state_dict`` / with ``module.`` prefixes) strictly.

    Only BatchNorm's ``num_batches_tracked`` counters may be absent: inference never reads them.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = RetinaFace()
    check_state_dict(
        net, state, str(path), what="is not a RetinaFace-ResNet50 checkpoint",
        hint="re-run: cosmos-cli download 5b-video2world", may_lack=lambda key: key.endswith("num_batches_tracked"),
    )  # fmt: skip
    net.load_state_dict(state, strict=False)
    return net.to(device, dtype=torch.float32).eval()


class FaceBlurFilter:
    """RetinaFace detection + pixelation over a whole video."""

    def __init__(self, net: RetinaFace) -> None:
        self.net = net

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """Face boxes (K, 4) in pixels, best first, for each frame of a uint8 ``(T, H, W, 3)`` array."""
        height, width = frames.shape[1:3]
        device = self.device
        priors = prior_boxes(height, width, RE50_CONFIG).to(device)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
        means = torch.tensor(BGR_MEANS, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        found = []
        for start in range(0, len(frames), BATCH_FRAMES):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + BATCH_FRAMES])).to(device)
            batch = batch.permute(0, 3, 1, 2)[:, [2, 1, 0]].float() - means
            offsets, scores, _ = self.net(batch)
            boxes = decode_boxes(offsets, priors) * scale
            found += [select_faces(b, s[:, 1]).cpu().numpy() for b, s in zip(boxes, scores, strict=True)]
        return found

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        """A pixelated copy of ``frames`` and the number of faces pixelated over all frames."""
        out = frames.copy()
        count = 0
        for frame, boxes in zip(out, self.detect(frames), strict=True):
            count += pixelate_boxes(frame, boxes)
        return out, count
