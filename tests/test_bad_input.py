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
