"""``generate``'s model input equals NVIDIA's float preparation (spec cosmos-ar.md section 2, input preparation).

The reference here is written independently, in float64 numpy, from the spec's recipe: the clip decoded by
imageio's own ffmpeg reader, the last ``N`` frames, ``/255*2-1``, resized to ``(ceil(s*h), ceil(s*w))`` with
``s = max(W/w, H/h)`` by a separable antialiased bilinear filter (the triangle filter of PIL and PyTorch,
its support stretched by the downscale factor; not resampled at all when the size already matches, as
torchvision returns such a frame unchanged), then center-cropped at ``round((size - target) / 2)`` and
padded to 33 by repeating the last frame. Real clips from ``shared/data/clips`` (1024x640), shrunk 10x to
the tiny model's 96x64 and 2x to 512x320, kept at 1024x640, and re-encoded by real ffmpeg to 1080p and
portrait sizes that NVIDIA's 1024x640 models resize. The older path (PIL resize of uint8 frames, rounded)
misses the bound by about a grey level; these tests fail on it.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from tests.clip_factory import CLIPS
from tests.conftest import TINY_AR_DIR

needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS}")
TOLERANCE = 1e-4  # the bound, in [-1, 1]


# ---- the independent float64 reference ---------------------------------------------------------------
def triangle_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First source index ``(out,)`` and normalised weights ``(out, taps)`` of an antialiased bilinear
    resize along one axis (align_corners=False): output pixel ``i`` is centred at ``(i + 0.5) * scale`` in
    the source, and the triangle's half-width is ``max(scale, 1)`` source pixels."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    first, rows = [], []
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        w = np.maximum(1.0 - np.abs((np.arange(lo, hi) + 0.5 - center) / support), 0.0)
        first.append(lo)
        rows.append(w / w.sum())
    taps = max(len(r) for r in rows)
    weights = np.zeros((out_size, taps))
    for i, r in enumerate(rows):
        weights[i, : len(r)] = r
    return np.array(first), weights


def resample_axis(x: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """``x`` resized to ``out_size`` along ``axis`` with :func:`triangle_taps` (a banded sum, not a matrix)."""
    x = np.moveaxis(x, axis, 0)
    first, weights = triangle_taps(x.shape[0], out_size)
    out = np.zeros((out_size, *x.shape[1:]))
    for k in range(weights.shape[1]):
        idx = np.minimum(first + k, x.shape[0] - 1)  # past the window the weight is 0
        out += weights[:, k].reshape(-1, *([1] * (x.ndim - 1))) * x[idx]
    return np.moveaxis(out, 0, axis)


def reference_input(frames: list[np.ndarray], height: int, width: int, total: int | None = None) -> np.ndarray:
    """The spec's recipe in float64: uint8 ``(h, w, 3)`` frames -> ``(N, 3, height, width)``, or the
    tokenizer's ``(1, 3, total, height, width)`` padded by repeating the last frame."""
    src_h, src_w = frames[0].shape[:2]
    s = max(width / src_w, height / src_h)
    size_h, size_w = math.ceil(s * src_h), math.ceil(s * src_w)
    top, left = int(round((size_h - height) / 2.0)), int(round((size_w - width) / 2.0))
    out = []
    for frame in frames:
        x = frame.astype(np.float64) / 255.0 * 2.0 - 1.0
        if (size_h, size_w) != (src_h, src_w):
            x = resample_axis(resample_axis(x, size_h, 0), size_w, 1)
        out.append(x[top : top + height, left : left + width])
    if total is None:
        return np.stack(out).transpose(0, 3, 1, 2)
    out += [out[-1]] * (total - len(out))
    return np.stack(out).transpose(3, 0, 1, 2)[None]


def decode_last(path: Path, n: int) -> list[np.ndarray]:
    """The last ``n`` frames, decoded by imageio's own reader (not our streaming decoder)."""
    with imageio.get_reader(path, format="ffmpeg") as reader:
        frames = [np.asarray(f) for f in reader]
    return frames[-n:]


def rescaled_clip(tmp_path: Path, source: Path, width: int, height: int, frames: int = 12) -> Path:
    """The first ``frames`` frames of ``source`` re-encoded by real ffmpeg at ``width x height``."""
    import imageio_ffmpeg

    out = tmp_path / f"{source.stem}_{width}x{height}.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-frames:v", str(frames),
           "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12",
           "-pix_fmt", "yuv420p", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def old_rounding_path(path: Path, n: int, height: int, width: int) -> np.ndarray:
    """What ``generate`` fed the tokenizer before: PIL's resize of the uint8 frames, rounded, then scaled
    (``extract-frames`` still writes exactly these uint8 frames)."""
    from cosmos_cli.io.video import load_model_input

    frames, _ = load_model_input(path, n, height, width)
    return reference_input(list(frames), height, width)  # already at the size: only /255*2-1


def assert_matches(ours: np.ndarray, reference: np.ndarray) -> None:
    worst = float(np.abs(ours - reference).max())
    assert worst <= TOLERANCE, f"max |ours - reference| = {worst:.3g} in [-1, 1] ({worst * 127.5:.2f} grey levels)"


def model_video(path: Path, n: int, height: int, width: int) -> np.ndarray:
    """Our model input frames ``(n, 3, height, width)`` (the padding to 33 is checked on its own below)."""
    from cosmos_cli.io.model_input import load_model_video

    frames, _ = load_model_video(path, n, height, width)
    assert frames.dtype == torch.float32
    return frames.double().numpy()


# ---- the reference itself ----------------------------------------------------------------------------
def test_reference_filter_is_the_triangle_filter():
    """Hand-checked taps: a 2x shrink averages 4 source pixels with weights 1/8, 3/8, 3/8, 1/8."""
    first, weights = triangle_taps(8, 4)
    assert first[1] == 1
    np.testing.assert_allclose(weights[1], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    assert first[0] == 0 and np.allclose(weights[0][:3], [3 / 7, 3 / 7, 1 / 7])  # clipped at the edge
    ramp = np.arange(16, dtype=np.float64)
    np.testing.assert_allclose(resample_axis(ramp, 4, 0)[1:3], [5.5, 9.5])  # linear stays linear inside
    np.testing.assert_allclose(resample_axis(ramp, 16, 0), ramp)  # same size: identity


def test_reference_is_torchs_antialiased_bilinear_in_float64():
    """The float64 reference and torch's own kernel in float64 agree to 1e-12 (shrinks and stretches), so
    what the tests below measure against float32 is float rounding only."""
    import torch.nn.functional as F

    x = np.random.default_rng(2).random((53, 77, 3))
    for size in [(13, 29), (41, 60), (100, 120)]:
        ours = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=size, mode="bilinear",
                             align_corners=False, antialias=True)[0].permute(1, 2, 0).numpy()  # fmt: skip
        reference = resample_axis(resample_axis(x, size[0], 0), size[1], 1)
        assert np.abs(ours - reference).max() < 1e-12


# ---- tests ---------------------------------------------------------------------------------------------
@needs_clips
@pytest.mark.parametrize(
    ("clip", "height", "width"),
    [("input.mp4", 64, 96), ("batch_inputs_2.mp4", 320, 480)],
    ids=["10x-shrink", "2x-shrink"],
)
def test_model_video_equals_the_reference_and_the_old_rounding_did_not(clip, height, width):
    path = CLIPS / clip
    ours = model_video(path, 9, height, width)
    reference = reference_input(decode_last(path, 9), height, width)
    assert ours.shape == reference.shape == (9, 3, height, width)
    assert_matches(ours, reference)
    old = np.abs(old_rounding_path(path, 9, height, width) - reference)
    assert old.max() > 20 * TOLERANCE  # the PIL + round path misses the bound ...
    assert old.max() <= 2.5 / 255  # ... by about a grey level, not by a bug


@needs_clips
@pytest.mark.parametrize("size", [(1920, 1080), (720, 1280)], ids=["1080p", "portrait"])
def test_clips_of_other_sizes_resize_to_1024x640_as_nvidia(tmp_path, size):
    """1080p shrinks by 0.59 (1138x640, crop 57 columns each side); portrait grows by 1.42 (1024x1820)."""
    clip = rescaled_clip(tmp_path, CLIPS / "batch_inputs_2.mp4", *size, frames=4)
    ours = model_video(clip, 3, 640, 1024)  # 3 frames keep the float64 reference at a few seconds
    reference = reference_input(decode_last(clip, 3), 640, 1024)
    assert ours.shape == reference.shape == (3, 3, 640, 1024)
    assert_matches(ours, reference)
    assert np.abs(old_rounding_path(clip, 3, 640, 1024) - reference).max() > 20 * TOLERANCE


@needs_clips
def test_a_clip_at_the_model_size_is_not_resampled():
    """1024x640 in, 1024x640 out: exactly ``x/255*2-1`` of the decoded frames (torchvision skips the resize)."""
    from cosmos_cli.io.model_input import load_model_video

    path = CLIPS / "input.mp4"
    frames, info = load_model_video(path, 9, 640, 1024)
    decoded = torch.from_numpy(np.stack(decode_last(path, 9))).permute(0, 3, 1, 2)
    assert torch.equal(frames, decoded.float() / 255.0 * 2.0 - 1.0)
    assert info["resize"]["resized_height"] == 640 and info["resize"]["resized_width"] == 1024


@needs_clips
def test_image_input_follows_the_same_recipe():
    image = CLIPS / "input.jpg"
    ours = model_video(image, 1, 320, 480)
    reference = reference_input([imageio.imread(image)], 320, 480)
    assert_matches(ours, reference)
    assert np.abs(old_rounding_path(image, 1, 320, 480) - reference).max() > 20 * TOLERANCE


@needs_clips
def test_generate_feeds_the_tokenizer_the_reference_input(tiny_checkpoints, tmp_path):
    """What a real ``VideoPipeline.run`` hands the DV tokenizer (tiny model: the 1024x640 clip goes to 96x64,
    a 10x antialiased shrink); the run stops after the tokenize stage.

    Written against ``VideoPipeline`` only, so it also runs on the older code, where it fails."""
    from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline
    from cosmos_cli.pipeline.samples import Sample

    config = PipelineConfig(tiny_checkpoints, TINY_AR_DIR, device="cpu", compile=False, guardrail="off")
    pipe = VideoPipeline(config)
    seen: list[torch.Tensor] = []
    encode = pipe.tokenizer.encode

    def spy(video: torch.Tensor) -> torch.Tensor:
        seen.append(video.clone())
        return encode(video)

    pipe.tokenizer.encode = spy
    clip = CLIPS / "input.mp4"
    pipe.run([Sample("input", "a road", clip, seed=0)], tmp_path / "out", should_stop=lambda: bool(seen))
    (video,) = seen
    assert video.dtype == torch.float32
    args = pipe.args
    reference = reference_input(decode_last(clip, 9), args.video_height, args.video_width, args.num_video_frames)
    assert tuple(video.shape) == reference.shape
    assert_matches(video.double().numpy(), reference)


def test_float_resize_keeps_a_model_sized_frame_bit_exact():
    """No resize when the frame already has the model's size (torchvision returns it unchanged)."""
    from cosmos_cli.io.model_input import resize_cover_crop, to_model_range

    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = resize_cover_crop(to_model_range(frame), 64, 96)
    assert torch.equal(out, torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0)


def test_long_video_context_is_the_output_frames_unrounded_and_unresized():
    """The next chunk's input: the last 9 output frames as ``x/255*2-1``, padded to 33 by the last one."""
    from cosmos_cli.io.model_input import pad_video
    from cosmos_cli.pipeline.long_video import context_input

    frames = np.random.default_rng(1).integers(0, 256, (33, 64, 96, 3), dtype=np.uint8)
    context = context_input(frames)
    assert torch.equal(context, torch.from_numpy(frames[-9:]).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0)
    padded = pad_video(context, 33)
    assert tuple(padded.shape) == (1, 3, 33, 64, 96)
    assert torch.equal(padded[0, :, 9:], context[-1][:, None].expand(3, 24, 64, 96))


@needs_clips
def test_a_video_made_from_the_older_rounded_input_is_not_reused(tiny_checkpoints, tmp_path, capsys):
    """A ``generation.json`` without ``model_input`` (the uint8 path's) is another request: exit 2, untouched."""
    import json
    import shutil

    from cosmos_cli.cli import main
    from cosmos_cli.io.model_input import MODEL_INPUT

    clip = tmp_path / "clip.mp4"
    shutil.copy(CLIPS / "batch_inputs_0.mp4", clip)
    out = tmp_path / "out"
    argv = ["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR, "--input",
            str(clip), "--prompt", "a road", "--output-dir", str(out), "--disable-diffusion-decoder"]  # fmt: skip
    assert main(argv) == 0
    path = out / "clip" / "generation.json"
    record = json.loads(path.read_text())
    assert record["request"]["model_input"] == MODEL_INPUT
    del record["request"]["model_input"]  # as the older cosmos-cli wrote it
    path.write_text(json.dumps(record))
    before = (out / "clip" / "clip.mp4").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds a video made for another request (model_input)" in err, err
    assert (out / "clip" / "clip.mp4").stat().st_mtime_ns == before
