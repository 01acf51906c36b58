"""Every hint names a fix the command accepts: short clips, --tp, host RAM in the offload plan."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cosmos_cli.cli import main
from tests.clip_factory import make_clip
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective."


def generate(ckpt, *args: str) -> int:
    return main(["generate", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR, "--prompt", PROMPT, *args])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def generate_flags() -> set[str]:
    done = subprocess.run([sys.executable, "-m", "cosmos_cli", "generate", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # fmt: skip
    return set(re.findall(r"--[a-z][a-z0-9-]+", done.stdout))


def test_short_clip_hint_names_generates_own_flags(tiny_checkpoints, tmp_path, capsys):
    clip = make_clip(tmp_path / "short.mp4", 5, 96, 64)
    out = tmp_path / "out"
    common = ["--input", str(clip), "--disable-diffusion-decoder", "--output-dir", str(out)]
    assert generate(tiny_checkpoints, *common) == 2
    line = error_line(capsys)
    assert "has 5 frames in total, fewer than the 9 needed" in line
    named = set(re.findall(r"--[a-z][a-z0-9-]+", line))
    assert named == {"--num-input-frames", "--pad"} and named <= generate_flags()
    # the fixes it names work
    assert generate(tiny_checkpoints, *common, "--pad") == 0
    assert generate(tiny_checkpoints, *common, "--num-input-frames", "1", "--video-save-name", "one") == 0


def test_extract_frames_keeps_its_own_flags_in_the_hint(tmp_path, capsys):
    clip = make_clip(tmp_path / "short.mp4", 5, 96, 64)
    assert main(["extract-frames", str(clip), "--output", str(tmp_path / "f.npy")]) == 2
    assert "--end-frame/--end-time, pass --num-frames 1, or pass --pad" in error_line(capsys)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--tp", "3"], "--tp 3 cannot split"),
    (["--tp", "3", "--gpus", "3"], "--tp 3 cannot split"),
    (["--tp", "2", "--gpus", "3"], "--tp 2 does not divide the 3 processes"),
])  # fmt: skip
def test_tp_hints_suggest_values_that_are_accepted(tiny_checkpoints, tmp_path, capsys, flags, expected):
    clip = shared_path("data", "clips", "input.mp4")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # an output folder under a regular file: the next check after --tp/--gpus, before anything launches
    common = ["--input", str(clip), "--output-dir", str(blocker / "out")]
    assert generate(tiny_checkpoints, *common, *flags) == 2
    line = error_line(capsys)
    assert expected in line
    suggested = re.search(r"\((?:use|add) (--\w+) ([\d, ]+)", line)
    values = [int(v) for v in suggested.group(2).split(",")]
    assert values and suggested.group(1) in ("--tp", "--gpus")
    for value in values:  # each suggestion passes the parallel checks (and fails only on the output folder)
        fixed = dict(zip(flags[::2], flags[1::2], strict=True)) | {suggested.group(1): str(value)}
        if suggested.group(1) == "--tp" and "--gpus" not in fixed and value > 1:
            fixed["--gpus"] = str(value)
        assert generate(tiny_checkpoints, *common, *[x for kv in fixed.items() for x in kv]) == 2
        assert "is a file, not a folder" in error_line(capsys)


def test_plan_says_host_ram_is_what_does_not_fit(tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["offload-profile", "--plan", "--gpu-memory", "12", "--checkpoint-dir", str(tmp_path), "--json", str(out)]
    assert main([*argv, "--host-memory", "16"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["recommended"] is None
    assert report["no_fit"].startswith("no placement fits host memory: those that fit 12.0 GiB of GPU memory")
    assert "16.0 GiB is free" in report["no_fit"] and "free or add host RAM" in report["no_fit"]
    assert "no placement fits host memory" in printed
    needed = float(re.search(r"keep ([\d.]+) GiB", report["no_fit"]).group(1))
    assert needed > 16 * 0.9
    # with that much host RAM the same GPU fits, and a GPU too small says the GPU is what is short
    assert main([*argv, "--host-memory", str(int(needed / 0.9) + 1)]) == 0
    assert json.loads(out.read_text())["recommended"] is not None
    assert main([*argv[:3], "2", *argv[4:], "--host-memory", "512"]) == 0
    assert json.loads(out.read_text())["no_fit"].startswith("no placement fits 2.0 GiB of GPU memory")
