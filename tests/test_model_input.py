"""``generate``'s model input equals NVIDIA's float preparation (spec cosmos-ar.md section 2, input preparation).

The reference here is written independently in float64 numpy from the spec's recipe: decoded uint8 frames
(imageio's own ffmpeg reader), ``/255*2-1``, last ``N`` frames padded to 33, resize to
``(ceil(s*h), ceil(s*w))`` with ``s = max(W/w, H/h)`` by an antialiased bilinear (triangle) filter whose
support widens with the downscale factor (what torchvision's ``antialias=True`` computes), then a center
crop at ``round((size - target) / 2)`` (Python's round, as torchvision). Real clips from ``shared/data/clips``,
re-encoded with real ffmpeg to sizes that need resizing (the shared clips are already 1024x640).
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from cosmos_cli.io.model_input import load_model_video, pad_video
from cosmos_cli.io.video import load_model_input
from tests.clip_factory import CLIPS
from tests.conftest import TINY_AR_DIR

needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS}")
TOLERANCE = 1e-4  # the bound, in [-1, 1]


# ---- the independent float64 reference ---------------------------------------------------------------
def _aa_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of a bilinear resize with antialiasing, align_corners=False, normalised rows."""
    scale = in_size / out_size
    support = max(scale, 1.0)  # the triangle widens by the downscale factor; plain bilinear when upscaling
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j + 0.5 - center) / support), 0.0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights


def reference_input(frames: list[np.ndarray], height: int, width: int, total: int) -> np.ndarray:
    """The spec's recipe in float64: (1, 3, total, height, width) in [-1, 1]."""
    video = np.stack(frames).astype(np.float64) / 255.0 * 2.0 - 1.0  # (N, h, w, 3)
    video = np.concatenate([video, np.repeat(video[-1:], total - len(video), axis=0)])
    src_h, src_w = video.shape[1:3]
    s = max(width / src_w, height / src_h)
    size_h, size_w = math.ceil(s * src_h), math.ceil(s * src_w)
    if (size_h, size_w) != (src_h, src_w):
        rows, cols = _aa_weights(src_h, size_h), _aa_weights(src_w, size_w)
        video = np.einsum("oh,thwc->towc", rows, video, optimize=True)  # rows, then columns (separable)
        video = np.einsum("towc,pw->topc", video, cols, optimize=True)
    top, left = int(round((size_h - height) / 2.0)), int(round((size_w - width) / 2.0))
    video = video[:, top : top + height, left : left + width]
    return video.transpose(3, 0, 1, 2)[None]


def decode_last(path: Path, n: int) -> list[np.ndarray]:
    """The last ``n`` frames, decoded by imageio's own reader (not our streaming decoder)."""
    with imageio.get_reader(path, format="ffmpeg") as reader:
        frames = [np.asarray(f) for f in reader]
    return frames[-n:]


def rescaled_clip(tmp_path: Path, source: Path, width: int, height: int) -> Path:
    """``source`` re-encoded by real ffmpeg at ``width x height`` (near-lossless, so detail survives)."""
    import imageio_ffmpeg

    out = tmp_path / f"{source.stem}_{width}x{height}.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-vf", f"scale={width}:{height}",
           "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def _old_rounding_path(path: Path, n: int, height: int, width: int, total: int) -> np.ndarray:
    """What generate fed the tokenizer before: PIL's uint8 resize, rounded, then scaled."""
    frames, _ = load_model_input(path, n, height, width)
    video = frames.astype(np.float64) / 255.0 * 2.0 - 1.0
    video = np.concatenate([video, np.repeat(video[-1:], total - len(video), axis=0)])
    return video.transpose(3, 0, 1, 2)[None]


# ---- tests ---------------------------------------------------------------------------------------------
@needs_clips
@pytest.mark.parametrize("size", [(1920, 1080), (720, 1280), (480, 270)], ids=["1080p", "portrait", "upscale"])
def test_model_video_equals_the_float64_reference_and_the_old_rounding_did_not(tmp_path, size):
    clip = rescaled_clip(tmp_path, CLIPS / "batch_inputs_2.mp4", *size)
    ours = pad_video(load_model_video(clip, 9, 640, 1024)[0], 33).double().numpy()
    reference = reference_input(decode_last(clip, 9), 640, 1024, 33)
    assert ours.shape == reference.shape == (1, 3, 33, 640, 1024)
    assert np.abs(ours - reference).max() <= TOLERANCE
    old = _old_rounding_path(clip, 9, 640, 1024, 33)
    assert np.abs(old - reference).max() > 20 * TOLERANCE  # the PIL + round path misses the bound
    assert np.abs(old - reference).max() <= 2.5 / 255  # ... by about a grey level, not by a bug


@needs_clips
def test_image_input_follows_the_same_recipe():
    image = CLIPS / "input.jpg"
    ours = pad_video(load_model_video(image, 1, 320, 480)[0], 33).double().numpy()
    reference = reference_input([imageio.imread(image)], 320, 480, 33)
    assert np.abs(ours - reference).max() <= TOLERANCE


@needs_clips
def test_generate_feeds_the_tokenizer_the_reference_input(tiny_checkpoints):
    """The pipeline's own input path (tiny model: 1024x640 clips go to 64x96, a 10x antialiased shrink)."""
    from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline, _to_model_video
    from cosmos_cli.pipeline.samples import Sample

    pipe = VideoPipeline(PipelineConfig(tiny_checkpoints, TINY_AR_DIR, device="cpu", compile=False))
    args = pipe.args
    clip = CLIPS / "input.mp4"
    sample = Sample(name="input", prompt="a road", visual_input=clip, seed=0)
    video = _to_model_video(pipe._read_input(sample), args.num_video_frames)
    assert video.dtype == torch.float32
    ours = video.double().numpy()
    reference = reference_input(decode_last(clip, 9), args.video_height, args.video_width, args.num_video_frames)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= TOLERANCE
    old = _old_rounding_path(clip, 9, args.video_height, args.video_width, args.num_video_frames)
    assert np.abs(old - reference).max() > 20 * TOLERANCE


def test_float_resize_keeps_a_model_sized_frame_bit_exact():
    """No resize when the frame already has the model's size (torchvision returns it unchanged)."""
    from cosmos_cli.io.model_input import resize_cover_crop, to_model_range

    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = resize_cover_crop(to_model_range(frame), 64, 96)
    assert torch.equal(out, torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0)
