"""Face pixelation on generated frames: RetinaFace-R50 detections, each face replaced by 5x5 blocks.

NVIDIA's ``RetinaFaceFilter`` settings: RGB->BGR, minus BGR means (104, 117, 123), fp32; faces with score
> 0.7, NMS at 0.4 after keeping the 5000 best, at most 750 per frame; faces under 20x20 pixels are left
alone; each face is shrunk to 5x5 with bilinear sampling and blown back up with nearest-neighbour.

Where this differs from NVIDIA's code: boxes are clipped to the frame *before* the 20-pixel test and empty
boxes are skipped (NVIDIA tests first, so a box lying outside the frame reaches ``cv2.resize`` empty and
crashes).
Frames go through the detector in batches rather than one at a time. The resampling is ``cv2.resize``
itself (opencv-python-headless, in the ``guardrail`` extra), as in NVIDIA's ``pixelate_face``: OpenCV's
fixed-point bilinear arithmetic is exact only in OpenCV (a numpy copy of it drifted on large regions).
"""

from __future__ import annotations

import numpy as np
import torch

from cosmos_cli.errors import CosmosError
from cosmos_cli.guardrail.availability import EXTRA_HINT
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


def _cv2():
    """OpenCV, imported on first use: the stage and its profiling stand-in load without it (they pixelate
    nothing until a face is found); ``check_guardrail_available`` names the extra before a run starts."""
    try:
        import cv2
    except ImportError as err:
        raise CosmosError("face pixelation needs opencv-python-headless (not installed)", EXTRA_HINT) from err
    return cv2


def pixelate(region: np.ndarray, blocks: int = PIXEL_BLOCKS) -> np.ndarray:
    """NVIDIA's ``pixelate_face`` on a uint8 (H, W, C) region: ``cv2.resize`` to ``blocks`` x ``blocks`` with
    ``INTER_LINEAR``, then back to (W, H) with ``INTER_NEAREST`` (constant blocks)."""
    cv2 = _cv2()
    height, width = region.shape[:2]
    small = cv2.resize(region, (blocks, blocks), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


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
