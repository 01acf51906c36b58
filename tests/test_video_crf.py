"""mp4 quality: NVIDIA's (libx264's default CRF 23) by default, ``--crf`` recorded, applied and checked.

libx264 writes its settings (``... crf=23.0 ...``) into the stream's SEI, so the bytes of the mp4 say which
CRF encoded it: real ffmpeg, no mocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import imageio
import numpy as np
import pytest

from cosmos_cli.cli import main
from cosmos_cli.io.video import DEFAULT_CRF, encode_mp4, read_mp4, write_mp4
from tests.clip_factory import indexed_frame
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective."


def x264_crf(path: Path) -> float:
    """The CRF libx264 recorded in the stream's settings string (its SEI user data)."""
    found = re.findall(rb"x264 - core .*? crf=(\d+\.\d+)", Path(path).read_bytes())
    assert len(found) == 1, f"no x264 settings string in {path}"
    return float(found[0])


def frames(n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.stack([indexed_frame(i, 96, 64) for i in range(n)]).astype(np.int16)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)  # texture: CRF matters


def test_default_is_nvidias_mimsave_quality(tmp_path):
    video = frames()
    ours = write_mp4(video, tmp_path / "ours.mp4")
    imageio.mimsave(tmp_path / "nvidia.mp4", list(video), fps=25)  # the reference's call, as is
    assert DEFAULT_CRF == 23
    assert x264_crf(ours) == 23.0 == x264_crf(tmp_path / "nvidia.mp4")
    assert np.array_equal(read_mp4(ours), read_mp4(tmp_path / "nvidia.mp4"))  # the same encode


def test_crf_is_passed_once_and_changes_the_encode(tmp_path):
    video = frames()
    for crf in (10, 18, 25, 51):
        encode_mp4(video, tmp_path / f"{crf}.mp4", crf=crf)
        assert x264_crf(tmp_path / f"{crf}.mp4") == float(crf)  # imageio-ffmpeg adds no -crf of its own
    sizes = [(tmp_path / f"{crf}.mp4").stat().st_size for crf in (10, 18, 25, 51)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 2 * sizes[2]
    with pytest.raises(ValueError, match="crf"):
        encode_mp4(video, tmp_path / "bad.mp4", crf=52)


@pytest.mark.parametrize("value", ["60", "-1"])
def test_crf_out_of_range_is_one_line_before_any_model(tmp_path, capsys, value):
    clip = shared_path("data", "clips", "input.mp4")
    code = main(["generate", "--checkpoint-dir", str(tmp_path / "nothing-here"), "--input", str(clip),
                 "--prompt", PROMPT, "--output-dir", str(tmp_path / "out"), "--crf", value])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"--crf must be in 0..51, got {value}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_jsonl_crf_is_checked_with_its_line(tmp_path, capsys):
    clip = shared_path("data", "clips", "input.mp4")
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"prompt": PROMPT, "visual_input": str(clip), "crf": 18}) + "\n"
                     + json.dumps({"prompt": PROMPT, "visual_input": str(clip), "crf": 99}) + "\n")  # fmt: skip
    code = main(["generate", "--checkpoint-dir", str(tmp_path), "--batch-input", str(batch),
                 "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert f"{batch}:2: crf must be in 0..51, got 99" in capsys.readouterr().err
    batch.write_text(json.dumps({"prompt": PROMPT, "visual_input": str(clip), "crf": 18.5}) + "\n")
    assert main(["generate", "--checkpoint-dir", str(tmp_path), "--batch-input", str(batch)]) == 2
    assert f"{batch}:1: crf must be an integer, got 18.5" in capsys.readouterr().err


def test_generate_records_and_applies_crf(tiny_checkpoints, tmp_path, capsys):
    clip = shared_path("data", "clips", "input.mp4")
    argv = ["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR, "--input",
            str(clip), "--prompt", PROMPT, "--disable-diffusion-decoder", "--output-dir", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--video-save-name", "default"]) == 0
    assert x264_crf(tmp_path / "default" / "default.mp4") == 23.0
    assert main([*argv, "--video-save-name", "fine", "--crf", "18"]) == 0
    assert x264_crf(tmp_path / "fine" / "fine.mp4") == 18.0
    record = json.loads((tmp_path / "fine" / "generation.json").read_text())
    assert record["sample"]["crf"] == 18 and record["request"]["crf"] == 18
    # the same frames, encoded finer: the re-encode changes the file, not the generation
    assert (tmp_path / "fine" / "fine.mp4").stat().st_size > (tmp_path / "default" / "default.mp4").stat().st_size
    capsys.readouterr()
    # another CRF is another video: a re-run into the same folder is refused, not "already done"
    assert main([*argv, "--video-save-name", "fine", "--crf", "30"]) == 2
    assert "crf 18 -> 30" in capsys.readouterr().err
    assert main([*argv, "--video-save-name", "fine", "--crf", "18"]) == 0
    assert "already done" in capsys.readouterr().out
