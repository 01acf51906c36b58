"""cosmos_cli.io.video and cosmos_cli.io.atomic on real files with real ffmpeg: the model-input contract."""

from __future__ import annotations

import collections
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos_cli.errors import BadInput
from cosmos_cli.io.atomic import atomic_path
from cosmos_cli.io.video import (
    cover_crop_geometry,
    load_model_input,
    probe_video,
    read_image,
    read_mp4,
    read_video_window,
    resize_center_crop,
    write_mp4,
)
from tests.clip_factory import CLIPS, frame_index, indexed_frame, make_clip

needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS}")


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- resize + center crop: the reference's geometry, PIL's pixels -------------------------------------


@pytest.mark.parametrize(
    ("src_hw", "expected"),
    [
        ((640, 1024), (640, 1024, 0, 0)),  # already the model's size: identity
        ((1080, 1920), (640, 1138, 0, 57)),  # ceil(1137.78) = 1138
        ((270, 480), (640, 1138, 0, 57)),  # upscaled by 2.37
        ((1280, 720), (1821, 1024, 590, 0)),  # portrait; (1821-640)/2 = 590.5 rounds half to even
        ((641, 1023), (642, 1024, 1, 0)),  # s = 1024/1023: both sides round up
        ((643, 1024), (643, 1024, 2, 0)),  # (643-640)/2 = 1.5 rounds to 2 (half to even), not floor's 1
    ],
)
def test_cover_crop_geometry_matches_reference_arithmetic(src_hw, expected):
    geometry = cover_crop_geometry(*src_hw, 640, 1024)
    assert (geometry.resized_height, geometry.resized_width, geometry.top, geometry.left) == expected


def test_crop_is_centered_exactly_when_no_scaling_is_needed():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (640, 2048, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_center_crop(wide, 640, 1024), wide[:, 512:1536])
    tall = rng.integers(0, 256, (1280, 1024, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_center_crop(tall, 640, 1024), tall[320:960])


def test_crop_of_a_mirror_symmetric_frame_stays_symmetric():
    x = np.abs(np.arange(1920) - 959.5)
    y = np.abs(np.arange(1080) - 539.5)
    grey = (np.add.outer(y / 4, x / 8) % 256).astype(np.uint8)
    out = resize_center_crop(np.repeat(grey[:, :, None], 3, axis=2), 640, 1024).astype(int)
    assert out.shape == (640, 1024, 3)
    assert np.abs(out - out[:, ::-1]).max() <= 1
    assert np.abs(out - out[::-1]).max() <= 1


@needs_clips
@pytest.mark.parametrize("size", [(1920, 1080), (720, 1280)])
def test_pil_bilinear_matches_torchvision_resize_within_a_grey_level(size):
    """The reference resizes float [-1, 1] tensors with torchvision (F.interpolate, bilinear, antialias)."""
    torch = pytest.importorskip("torch")
    source = np.asarray(Image.open(CLIPS / "input.jpg").convert("RGB").resize(size, Image.Resampling.BICUBIC))
    ours = resize_center_crop(source, 640, 1024).astype(np.float64)
    g = cover_crop_geometry(source.shape[0], source.shape[1], 640, 1024)
    tensor = torch.from_numpy(source.copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    resized = torch.nn.functional.interpolate(
        tensor, size=(g.resized_height, g.resized_width), mode="bilinear", align_corners=False, antialias=True
    )
    crop = resized[0, :, g.top : g.top + 640, g.left : g.left + 1024].permute(1, 2, 0).numpy()
    reference = (crop.astype(np.float64) + 1) / 2 * 255
    assert np.abs(ours - reference).max() <= 1.01
    assert np.abs(ours - np.round(reference)).mean() < 0.2
    bicubic = np.asarray(
        Image.fromarray(source)
        .resize((g.resized_width, g.resized_height), Image.Resampling.BICUBIC)
        .crop((g.left, g.top, g.left + 1024, g.top + 640))
    ).astype(np.float64)
    assert np.abs(bicubic - np.round(reference)).mean() > 0.5  # the check can tell filters apart


# ---- images -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGB", ".jpg"), ("RGBA", ".png"), ("P", ".png"), ("L", ".bmp"), ("LA", ".png"), ("RGB", ".webp")],
)
def test_read_image_any_mode_gives_rgb_uint8(tmp_path, mode, suffix):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, 20:] = (200, 100, 50)
    image = Image.fromarray(rgb)
    image = image.convert(mode) if mode not in ("P",) else image.quantize(4)
    path = tmp_path / f"im{suffix}"
    image.save(path)
    out = read_image(path)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert np.abs(out[:, :15].astype(int)).max() <= 8  # the black half stays black (lossy codecs ring at 20)
    if mode in ("RGB", "RGBA", "P"):
        assert np.abs(out[15, 30].astype(int) - (200, 100, 50)).max() <= 8


def test_read_image_scales_16_bit_instead_of_clipping(tmp_path):
    wide = np.array([[0, 257 * 128, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(wide).save(path)
    assert Image.open(path).mode.startswith("I")
    out = read_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_read_image_applies_exif_orientation(tmp_path):
    rgb = np.zeros((20, 60, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(rgb).save(path, exif=exif)
    assert read_image(path).shape == (60, 20, 3)


@needs_clips
def test_image_input_is_one_frame_whatever_num_frames():
    frames, info = load_model_input(CLIPS / "input.jpg", 9, 640, 1024)
    assert frames.shape == (1, 640, 1024, 3) and frames.dtype == np.uint8
    assert info["kind"] == "image" and info["frame_indices"] == [0]
    assert (info["source_width"], info["source_height"]) == (1024, 640)


# ---- video: last-N window, streaming ------------------------------------------------------------------


@needs_clips
@pytest.mark.parametrize("name", ["input.mp4", *(f"batch_inputs_{i}.mp4" for i in range(5))])
def test_real_clips_give_their_last_nine_frames(name):
    clip = CLIPS / name
    frames, info = load_model_input(clip, 9, 640, 1024)
    assert frames.shape == (9, 640, 1024, 3) and frames.dtype == np.uint8
    everything = read_mp4(clip)
    assert info["frame_indices"] == list(range(len(everything) - 9, len(everything)))
    np.testing.assert_array_equal(frames, everything[-9:])  # 1024x640 already: resize is the identity
    assert (info["source_width"], info["source_height"], info["source_fps"]) == (1024, 640, 30.0)


@needs_clips
def test_probe_reports_size_fps_and_duration():
    probe = probe_video(CLIPS / "input.mp4")
    assert (probe.width, probe.height, probe.fps, probe.codec) == (1024, 640, 30.0, "h264")
    assert probe.frame_estimate == 60


def test_window_is_the_last_consecutive_frames(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 30, 96, 64)
    window = read_video_window(clip, 9)
    assert window.indices == list(range(21, 30))
    assert [frame_index(f) for f in window.frames] == window.indices
    assert window.frames_decoded == 30 and window.reached_end


def test_end_frame_selects_an_earlier_window_and_stops_decoding(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 30, 96, 64)
    window = read_video_window(clip, 9, end_frame=12)
    assert window.indices == list(range(4, 13))
    assert [frame_index(f) for f in window.frames] == window.indices
    assert window.frames_decoded == 13 and not window.reached_end


def test_streaming_memory_does_not_grow_with_clip_length(tmp_path):
    """400 frames of 320x240 are 92 MB raw; the reader may only ever hold the ring of 9 (plus slack)."""
    clip = make_clip(tmp_path / "long.mp4", 400, 320, 240)
    frame_bytes = 320 * 240 * 3
    ring: collections.deque = collections.deque(maxlen=9)
    seen_lengths = []
    tracemalloc.start()
    try:
        window = read_video_window(clip, 9, buffer=ring, on_progress=lambda n: seen_lengths.append(len(ring)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert window.frames_decoded == 400 and window.indices == list(range(391, 400))
    assert max(seen_lengths) == 9 and len(seen_lengths) >= 400 // 16
    assert peak < 25 * frame_bytes, f"peak {peak / 2**20:.1f} MiB while streaming"


def test_progress_reports_every_decoded_frame(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 40, 96, 64)
    counts: list[int] = []
    load_model_input(clip, 9, 64, 96, on_progress=counts.append)
    assert sum(counts) == 40


@pytest.mark.parametrize(("width", "height"), [(480, 270), (1920, 1080), (720, 1280)])
def test_odd_sizes_are_covered_and_cropped(tmp_path, width, height):
    clip = make_clip(tmp_path / "c.mp4", 3, width, height)
    frames, info = load_model_input(clip, 1, 640, 1024)
    assert frames.shape == (1, 640, 1024, 3)
    assert info["frame_indices"] == [2] and frame_index(frames[0]) == 2
    expected = cover_crop_geometry(height, width, 640, 1024)
    assert info["resize"] == expected.as_dict()


def test_rotated_clip_is_read_the_way_players_show_it(tmp_path):
    import subprocess

    import imageio_ffmpeg

    plain = make_clip(tmp_path / "plain.mp4", 10, 96, 64)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(plain)]
        + ["-c", "copy", str(rotated)],
        check=True,
    )
    window = read_video_window(rotated, 9)
    assert window.frames[0].shape == (96, 64, 3)
    assert (window.probe.width, window.probe.height) == (64, 96)


def test_short_clip_is_an_error_or_padded_with_its_last_frame(tmp_path):
    clip = make_clip(tmp_path / "five.mp4", 5, 96, 64)
    with pytest.raises(BadInput, match=r"five\.mp4 has 5 frames.*--pad"):
        load_model_input(clip, 9, 64, 96)
    frames, info = load_model_input(clip, 9, 64, 96, pad=True)
    assert info["frame_indices"] == [0, 1, 2, 3, 4, 4, 4, 4, 4] and info["padded_frames"] == 4
    assert [frame_index(f) for f in frames] == info["frame_indices"]


def test_end_frame_past_the_clip_is_an_error(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 12, 96, 64)
    with pytest.raises(BadInput, match="past the end"):
        load_model_input(clip, 9, 64, 96, end_frame=12)
    frames, info = load_model_input(clip, 9, 64, 96, end_frame=11)
    assert info["frame_indices"] == list(range(3, 12))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "is empty"),
        ("noise.mp4", os.urandom(50_000), "not a readable video"),
        ("text.mov", b"hello, not a video\n", "not a readable video"),
        ("notes.txt", b"hello\n", "unsupported file type"),
        ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "not a readable image"),
    ],
)
def test_bad_inputs_raise_bad_input_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=message) as caught:
        load_model_input(path, 9, 640, 1024)
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_is_not_an_input(tmp_path):
    with pytest.raises(BadInput, match="is a folder"):
        load_model_input(tmp_path, 9, 640, 1024)


@needs_clips
def test_truncated_clip_is_a_bad_input(tmp_path):
    data = (CLIPS / "input.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="cut.mp4"):
        load_model_input(path, 9, 640, 1024)


# ---- writing mp4s, atomically -------------------------------------------------------------------------


def test_write_mp4_roundtrip_keeps_size_and_frame_count(tmp_path):
    frames = np.stack([indexed_frame(i, 96, 64) for i in range(7)])
    out = write_mp4(frames, tmp_path / "o.mp4", fps=25)
    back = read_mp4(out)
    assert back.shape == (7, 64, 96, 3)
    assert [frame_index(f) for f in back] == list(range(7))
    assert probe_video(out).fps == 25.0
    assert _listing(tmp_path) == ["o.mp4"]


def test_write_mp4_refuses_existing_output_unless_overwrite(tmp_path):
    frames = np.zeros((2, 64, 96, 3), np.uint8)
    target = tmp_path / "o.mp4"
    target.write_bytes(b"keep me")
    with pytest.raises(BadInput, match="already exists.*--overwrite"):
        write_mp4(frames, target)
    assert target.read_bytes() == b"keep me"
    write_mp4(frames, target, overwrite=True)
    assert read_mp4(target).shape == (2, 64, 96, 3)
    assert _listing(tmp_path) == ["o.mp4"]


def test_write_mp4_rejects_odd_sizes_without_leaving_a_file(tmp_path):
    with pytest.raises(BadInput, match="even height and width"):
        write_mp4(np.zeros((2, 63, 96, 3), np.uint8), tmp_path / "o.mp4")
    assert _listing(tmp_path) == []


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target, overwrite=False) as temp:
            assert temp.parent.parent == tmp_path and temp.name == "out.npy"
            temp.write_bytes(b"half")
            1 / 0  # noqa: B018
    assert _listing(tmp_path) == []


def test_atomic_path_creates_parents_and_removes_them_again_on_failure(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "new" / "deeper" / "out.npy", overwrite=False) as temp:
            temp.write_bytes(b"half")
            raise ValueError("writer failed")
    assert _listing(tmp_path) == []
    with atomic_path(tmp_path / "new" / "deeper" / "out.npy", overwrite=False) as temp:
        temp.write_bytes(b"whole")
    assert _listing(tmp_path) == ["new", "new/deeper", "new/deeper/out.npy"]


def test_atomic_path_replaces_a_folder_output(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    with atomic_path(target, overwrite=True) as temp:
        temp.mkdir()
        (temp / "new.png").write_bytes(b"new")
    assert _listing(tmp_path) == ["frames", "frames/new.png"]


def test_atomic_path_reports_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(BadInput, match=r"file\.txt is a file, not a folder"):
        with atomic_path(blocker / "out.mp4", overwrite=False):
            pass


def test_writes_on_a_full_disk_leave_nothing_and_say_disk_full(tmp_path):
    import json

    from tests.small_fs import fill, small_tmpfs

    frames = np.random.default_rng(0).integers(0, 256, (33, 64, 96, 3), dtype=np.uint8)  # ~200 KB of mp4
    with small_tmpfs(tmp_path / "small", "64k") as disk:
        target = disk / "out" / "video.mp4"
        with pytest.raises(BadInput, match=f"disk full at {target}"):
            write_mp4(frames, target)
        assert not target.exists() and not list(disk.rglob("*.partial-*"))
        fill(disk)
        with pytest.raises(BadInput, match="disk full at .*generation.json"):
            with atomic_path(disk / "generation.json", overwrite=True) as tmp:
                tmp.write_text(json.dumps({"status": "succeeded", "pad": "x" * 8192}))
        assert [p.name for p in disk.iterdir()] == ["filler"]  # the folder made for the mp4 went too
        assert not list(disk.rglob("*.partial-*"))
    small = frames[:, :16, :16]
    write_mp4(small, tmp_path / "fine.mp4")  # the read-back check passes a good file
    assert read_mp4(tmp_path / "fine.mp4").shape == (33, 16, 16, 3)
