"""Bad input is one line and exit 2, before any model loads: damaged clips, oversized pictures, unusable
output places. Real files made with real ffmpeg from the shared clip; the CLI runs as a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

from cosmos_cli.errors import BadInput
from cosmos_cli.io.video import load_model_input
from tests.conftest import REPO, shared_path


def cosmos(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_cli", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout
    )


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    return lines[0]


# ---- B: corrupt or truncated videos ------------------------------------------------------------------
@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    """``overwritten``: 60 KB of the shared clip's middle overwritten; ``faststart_cut``: a faststart copy
    (index first, so ffmpeg opens it) cut to half its size; ``tail_overwritten``: 5 KB near the end."""
    clip = shared_path("data", "clips", "input.mp4")
    folder = tmp_path_factory.mktemp("damaged")
    data = bytearray(clip.read_bytes())
    middle = bytearray(data)
    middle[len(data) // 3 : len(data) // 3 + 60_000] = bytes(i * 7 & 255 for i in range(60_000))
    (folder / "overwritten.mp4").write_bytes(middle)
    tail = bytearray(data)
    tail[len(data) - 30_000 : len(data) - 25_000] = bytes(i * 7 & 255 for i in range(5_000))
    (folder / "tail_overwritten.mp4").write_bytes(tail)
    fast = folder / "faststart.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-c", "copy",
                    "-movflags", "+faststart", str(fast)], check=True)  # fmt: skip
    (folder / "faststart_cut.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    return {p.stem: p for p in folder.glob("*.mp4")}


def test_the_faststart_copy_itself_is_accepted(damaged):
    frames, info = load_model_input(damaged["faststart"], 9, 64, 96)
    assert frames.shape == (9, 64, 96, 3) and info["frame_indices"] == list(range(51, 60))


@pytest.mark.parametrize("name", ["overwritten", "tail_overwritten", "faststart_cut"])
def test_damaged_clips_are_refused_not_read_from_the_middle(damaged, name):
    with pytest.raises(BadInput, match=r"corrupt or truncated: decoded \d+ of 60 frames"):
        load_model_input(damaged[name], 9, 64, 96)


def test_extract_frames_on_a_damaged_clip_is_one_line_exit_2(damaged, tmp_path):
    out = cosmos("extract-frames", str(damaged["faststart_cut"]), "-o", str(tmp_path / "f.npy"))
    line = one_line_error(out)
    assert re.search(r"faststart_cut\.mp4: corrupt or truncated: decoded \d+ of 60 frames; ffmpeg: ", line)
    assert not list(tmp_path.iterdir())


# ---- C: decompression bombs and huge sizes -----------------------------------------------------------
def big_png(path: Path, side: int) -> Path:
    """A real PNG declaring ``side x side`` pixels, a few KB on disk (1-bit, all black)."""
    from PIL import Image

    Image.new("1", (side, side)).save(path, optimize=True)
    return path


@pytest.mark.parametrize("side", [9000, 20000])
def test_huge_images_are_refused_from_their_header(tmp_path, side):
    png = big_png(tmp_path / f"big{side}.png", side)
    assert png.stat().st_size < 2_000_000
    with pytest.raises(BadInput, match=rf"big{side}.png: .*too large.*at most 8192x8192 and 40 MP"):
        load_model_input(png, 1, 64, 96)


@pytest.mark.parametrize("side", [10000, 20000])  # PIL warns above 89 MP and refuses above 179 MP
def test_a_png_bomb_is_one_line_exit_2(tmp_path, side):
    out = cosmos("extract-frames", str(big_png(tmp_path / "bomb.png", side)), "-o", str(tmp_path / "f.npy"))
    line = one_line_error(out)
    assert "bomb.png: an image of " in line and "too large (at most 8192x8192 and 40 MP" in line
    assert "Warning" not in out.stderr and "DecompressionBomb" not in out.stderr
    assert not (tmp_path / "f.npy").exists()


def test_generate_refuses_a_huge_picture_before_any_model_loads(tmp_path):
    """No checkpoints at all: the picture's header is read before the pipeline is even opened."""
    png = big_png(tmp_path / "bomb.png", 9000)
    out = cosmos("generate", "--checkpoint-dir", str(tmp_path / "none"), "-i", str(png), "-p", "a road",
                 "-o", str(tmp_path / "out"))  # fmt: skip
    assert "bomb.png: an image of 9000x9000 is too large" in one_line_error(out)
    assert not (tmp_path / "out").exists()


def test_a_huge_video_frame_is_refused_before_decoding(tmp_path):
    from tests.clip_factory import make_clip

    clip = make_clip(tmp_path / "wide.mp4", 2, 8200, 16)
    with pytest.raises(BadInput, match="a video frame of 8200x16 is too large"):
        load_model_input(clip, 1, 64, 96)


def test_huge_output_size_is_refused_before_decoding(tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    out = cosmos("extract-frames", str(clip), "-o", str(tmp_path / "f.npy"), "--height", "100000",
                 "--width", "100000")  # fmt: skip
    assert "output size 100000x100000 is too large" in one_line_error(out)
    assert not list(tmp_path.iterdir())


# ---- D: places the user chose that cannot be used --------------------------------------------------
@pytest.fixture
def a_file(tmp_path) -> Path:
    (tmp_path / "notes.txt").write_text("not a folder")
    return tmp_path / "notes.txt"


def test_generate_output_dir_under_a_regular_file(tmp_path, a_file):
    out = cosmos("generate", "--checkpoint-dir", str(tmp_path / "none"), "-p", "a road",
                 "-i", str(shared_path("data", "clips", "input.jpg")), "-o", str(a_file / "out"))  # fmt: skip
    line = one_line_error(out)
    assert f"{a_file} is a file, not a folder" in line and "choose another --output-dir" in line


@pytest.mark.parametrize("verb", ["generate", "extract-frames"])
def test_an_output_under_proc_is_one_line(tmp_path, verb):
    clip = str(shared_path("data", "clips", "input.jpg"))
    if verb == "generate":
        args = ["--checkpoint-dir", str(tmp_path / "none"), "-p", "a road", "-i", clip, "-o", "/proc/cosmos-out"]
    else:
        args = [clip, "-o", "/proc/cosmos-out/frames.npy"]
    line = one_line_error(cosmos(verb, *args))
    assert "cannot write to the output folder /proc/cosmos-out: no folder can be made in /proc" in line
    assert "choose a writable" in line


def test_serve_port_out_of_range(tmp_path):
    out = cosmos("serve", "--checkpoint-dir", str(tmp_path / "none"), "--port", "70000",
                 "--jobs-dir", str(tmp_path / "jobs"))  # fmt: skip
    assert "--port 70000 is not a TCP port (use 0 to 65535" in one_line_error(out)
    assert not (tmp_path / "jobs").exists()


def test_serve_jobs_dir_that_is_a_file(tmp_path, a_file):
    out = cosmos("serve", "--checkpoint-dir", str(tmp_path / "none"), "--jobs-dir", str(a_file))
    line = one_line_error(out)
    assert f"{a_file} is a file, not a folder" in line and "choose another --jobs-dir" in line
    assert a_file.read_text() == "not a folder"


def test_os_errors_on_a_users_path_are_one_line_exit_2(a_file):
    """The boundary's safety net (cli.main): a real NotADirectoryError becomes exit 2, an ENOENT stays ours."""
    from cosmos_cli.errors import from_os_error

    with pytest.raises(OSError) as caught:
        (a_file / "x").mkdir()
    usage = from_os_error(caught.value)
    assert usage is not None and usage.exit_code == 2
    assert usage.one_line().startswith(f"cannot use {a_file / 'x'}: Not a directory")
    with pytest.raises(OSError) as missing:
        (a_file.parent / "missing").read_text()
    assert from_os_error(missing.value) is None
