"""`cosmos-cli extract-frames` end to end: real clips, real ffmpeg, every output type, every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos_cli.cli import main
from cosmos_cli.io.video import load_model_input, read_mp4
from tests.clip_factory import CLIPS, frame_index, make_clip

needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS}")


def extract(*args: str) -> int:
    return main(["extract-frames", *map(str, args)])


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden staging folders included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def sidecar(output: Path) -> dict:
    return json.loads(output.with_name(output.name + ".json").read_text())


@needs_clips
def test_real_clip_gives_its_last_nine_frames_and_a_sidecar(tmp_path, capsys):
    out = tmp_path / "frames.npy"
    assert extract(CLIPS / "input.mp4", "--output", out) == 0
    assert capsys.readouterr().out.strip() == str(out)
    frames = np.load(out)
    assert frames.shape == (9, 640, 1024, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, read_mp4(CLIPS / "input.mp4")[-9:])
    meta = sidecar(out)
    assert meta["source"] == str((CLIPS / "input.mp4").resolve())
    assert (meta["source_width"], meta["source_height"], meta["source_fps"]) == (1024, 640, 30.0)
    assert meta["frame_indices"] == list(range(51, 60)) and meta["padded_frames"] == 0
    assert meta["output"] == {
        "path": str(out.resolve()),
        "format": "npy",
        "frames": 9,
        "height": 640,
        "width": 1024,
        "fps": None,
    }
    assert listing(tmp_path) == ["frames.npy", "frames.npy.json"]


@needs_clips
@pytest.mark.parametrize("name", ["context.mp4", "pngs", "array.npy"])
def test_every_output_type_holds_the_same_frames(tmp_path, name):
    out = tmp_path / name
    assert extract(CLIPS / "batch_inputs_2.mp4", "-o", out) == 0
    expected, _ = load_model_input(CLIPS / "batch_inputs_2.mp4", 9, 640, 1024)
    if name.endswith(".npy"):
        got = np.load(out)
    elif name.endswith(".mp4"):
        got = read_mp4(out)
        assert sidecar(out)["output"]["fps"] == 30.0
    else:
        assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:04d}.png" for i in range(9)]
        got = np.stack([np.asarray(Image.open(p)) for p in sorted(out.iterdir())])
    assert got.shape == (9, 640, 1024, 3)
    tolerance = 2.0 if name.endswith(".mp4") else 0.0  # H.264 is lossy; PNG and npy are exact
    assert np.abs(got.astype(int) - expected).mean() <= tolerance


@needs_clips
def test_image_gives_one_frame(tmp_path):
    out = tmp_path / "still"
    assert extract(CLIPS / "input.jpg", "-o", out, "--num-frames", "9") == 0
    assert [p.name for p in out.iterdir()] == ["frame_0000.png"]
    meta = sidecar(out)
    assert meta["kind"] == "image" and meta["frame_indices"] == [0] and meta["output"]["frames"] == 1
    assert np.asarray(Image.open(out / "frame_0000.png")).shape == (640, 1024, 3)


@pytest.mark.parametrize(
    ("width", "height", "count", "extra"),
    [(480, 270, 10, ()), (720, 1280, 10, ()), (1920, 1080, 3, ("--pad",))],
)
def test_any_size_becomes_nine_640x1024_frames(tmp_path, width, height, count, extra):
    clip = make_clip(tmp_path / "clip.mp4", count, width, height)
    out = tmp_path / "o.npy"
    assert extract(clip, "-o", out, *extra) == 0
    frames = np.load(out)
    assert frames.shape == (9, 640, 1024, 3)
    meta = sidecar(out)
    assert [frame_index(f) for f in frames] == meta["frame_indices"]
    assert meta["frame_indices"][-1] == count - 1
    assert (meta["source_width"], meta["source_height"]) == (width, height)


def test_end_time_on_a_60_fps_clip(tmp_path):
    clip = make_clip(tmp_path / "fast.mp4", 90, 96, 64, fps=60)
    out = tmp_path / "o.npy"
    assert extract(clip, "-o", out, "--end-time", "1.0") == 0
    meta = sidecar(out)
    assert meta["source_fps"] == 60.0 and meta["end_frame"] == 59 and meta["end_time"] == 1.0
    assert meta["frame_indices"] == list(range(51, 60))
    assert [frame_index(f) for f in np.load(out)] == list(range(51, 60))


def test_end_frame_and_one_frame(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", 40, 96, 64)
    out = tmp_path / "o.npy"
    assert extract(clip, "-o", out, "--end-frame", "20", "--num-frames", "1") == 0
    assert sidecar(out)["frame_indices"] == [20]
    assert frame_index(np.load(out)[0]) == 20


def test_short_clip_with_pad_repeats_the_last_frame(tmp_path):
    clip = make_clip(tmp_path / "five.mp4", 5, 96, 64)
    out = tmp_path / "o.mp4"
    assert extract(clip, "-o", out, "--pad", "--height", "64", "--width", "96") == 0
    frames = read_mp4(out)
    assert frames.shape == (9, 64, 96, 3)
    assert [frame_index(f) for f in frames] == [0, 1, 2, 3, 4, 4, 4, 4, 4]
    assert sidecar(out)["padded_frames"] == 4


def test_existing_output_is_refused_unless_overwrite(tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", 12, 96, 64)
    out = tmp_path / "o.npy"
    assert extract(clip, "-o", out, "--height", "64", "--width", "96") == 0
    first = out.read_bytes()
    assert extract(clip, "-o", out, "--end-frame", "9", "--height", "64", "--width", "96") == 2
    assert "o.npy already exists" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert extract(clip, "-o", out, "--end-frame", "9", "--overwrite", "--height", "64", "--width", "96") == 0
    assert sidecar(out)["frame_indices"] == list(range(1, 10))
    assert listing(tmp_path) == ["clip.mp4", "o.npy", "o.npy.json"]


def test_a_left_over_sidecar_is_refused_too(tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", 12, 96, 64)
    (tmp_path / "o.npy.json").write_text("{}")
    assert extract(clip, "-o", tmp_path / "o.npy") == 2
    assert "o.npy.json already exists" in capsys.readouterr().err
    assert listing(tmp_path) == ["clip.mp4", "o.npy.json"]


def test_png_folder_is_replaced_whole_with_overwrite(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", 12, 96, 64)
    out = tmp_path / "pngs"
    out.mkdir()
    (out / "stale.txt").write_text("old run")
    assert extract(clip, "-o", out, "--overwrite", "-n", "1", "--height", "64", "--width", "96") == 0
    assert [p.name for p in out.iterdir()] == ["frame_0000.png"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """One folder of good and bad inputs, made once for all the bad-input cases."""
    folder = tmp_path_factory.mktemp("media")
    (folder / "folder.mp4").mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, 60_000, np.uint8)
    (folder / "noise.mp4").write_bytes(noise.tobytes())
    (folder / "notes.txt").write_text("not media")
    (folder / "blocker").write_text("a file where a folder should be")
    make_clip(folder / "five.mp4", 5, 96, 64)
    make_clip(folder / "ok.mp4", 12, 96, 64)
    Image.new("RGB", (96, 64)).save(folder / "photo.png")
    return folder


def bad_input_case(case: str, media: Path, out_dir: Path) -> tuple[list[str], str]:
    """(arguments, text the error line must contain) for one kind of bad input."""
    out, ok = str(out_dir / "out.npy"), str(media / "ok.mp4")
    return {
        "missing": ([str(media / "nope.mp4"), "-o", out], "nope.mp4: no such file"),
        "directory": ([str(media / "folder.mp4"), "-o", out], "folder.mp4 is a folder"),
        "empty": ([str(media / "empty.mp4"), "-o", out], "empty.mp4 is empty"),
        "corrupt": ([str(media / "noise.mp4"), "-o", out], "noise.mp4: not a readable video"),
        "unsupported": ([str(media / "notes.txt"), "-o", out], "unsupported file type '.txt'"),
        "too short": ([str(media / "five.mp4"), "-o", out], "five.mp4 has 5 frames"),
        "too short, new folder": (
            [str(media / "five.mp4"), "-o", str(out_dir / "new" / "o.npy")],
            "five.mp4 has 5 frames",
        ),
        "unwritable": ([ok, "-o", str(media / "blocker" / "o.npy")], "blocker is a file"),
        "end past clip": ([ok, "-o", out, "--end-frame", "12"], "past the end of"),
        "two ends": ([ok, "-o", out, "--end-frame", "3", "--end-time", "1"], "both given"),
        "end on image": ([str(media / "photo.png"), "-o", out, "--end-frame", "0"], "photo.png is an image"),
        "num frames": ([ok, "-o", out, "--num-frames", "3"], "--num-frames 3 is not supported"),
        "odd mp4": ([ok, "-o", str(out_dir / "o.mp4"), "--height", "63"], "even height and width"),
        "output type": ([ok, "-o", str(out_dir / "o.avi")], "unknown output type '.avi'"),
    }[case]


CASES = [
    "missing",
    "directory",
    "empty",
    "corrupt",
    "unsupported",
    "too short",
    "too short, new folder",
    "unwritable",
    "end past clip",
    "two ends",
    "end on image",
    "num frames",
    "odd mp4",
    "output type",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, media, capsys, case):
    args, expected = bad_input_case(case, media, tmp_path)
    before = listing(media)
    assert extract(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expected in err[0], err
    assert "(" in err[0]  # every message carries its fix in parentheses
    assert listing(tmp_path) == [] and listing(media) == before


@pytest.mark.parametrize("case", ["too short", "corrupt"])
def test_bad_input_through_python_dash_m(tmp_path, media, case):
    args, expected = bad_input_case(case, media, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cosmos_cli", "extract-frames", *args], capture_output=True, text=True
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr
    assert listing(tmp_path) == []


def test_help_explains_the_options():
    done = subprocess.run(
        [sys.executable, "-m", "cosmos_cli", "extract-frames", "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "120", "PATH": ""},
    )
    assert done.returncode == 0
    for flag in ("--output", "--num-frames", "--end-frame", "--end-time", "--pad", "--height", "--width"):
        assert flag in done.stdout
    assert "LAST" in done.stdout and "center-cropped" in done.stdout
