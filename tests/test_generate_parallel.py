"""`generate --gpus 2` end to end on CPU: real torchrun, real gloo process groups, the tiny checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from cosmos_cli.io.video import read_mp4
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective."


def run_cli(ckpt, *args: str, dd: bool = False) -> subprocess.CompletedProcess:
    decoder = [] if dd else ["--disable-diffusion-decoder"]
    argv = [sys.executable, "-m", "cosmos_cli", "generate", "--device", "cpu", "--checkpoint-dir", str(ckpt),
            "--ar-model-dir", TINY_AR_DIR, *decoder, *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def test_tensor_parallel_video_equals_single_process(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    common = ["--input", str(clip), "--prompt", PROMPT, "--seed", "5"]
    one = run_cli(tiny_checkpoints, *common, "--output-dir", str(tmp_path / "one"))
    two = run_cli(tiny_checkpoints, *common, "--output-dir", str(tmp_path / "two"), "--gpus", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one/input/input.mp4").read_bytes() == (tmp_path / "two/input/input.mp4").read_bytes()
    record = json.loads((tmp_path / "two/input/generation.json").read_text())
    assert record["parallel"] == {"world": 2, "tp": 2, "dp": 1}
    assert "torch.distributed.run" in record["torchrun"] and "--nproc-per-node 2" in record["torchrun"]


def test_tensor_parallel_run_splits_the_diffusion_decoder_and_keeps_the_video(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    common = ["--input", str(clip), "--prompt", PROMPT, "--seed", "5", "--diffusion-decoder"]
    one = run_cli(tiny_checkpoints, *common, "--output-dir", str(tmp_path / "one"), dd=True)
    two = run_cli(tiny_checkpoints, *common, "--output-dir", str(tmp_path / "two"), "--gpus", "2", dd=True)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    record = json.loads((tmp_path / "two/input/generation.json").read_text())
    assert record["decoder"] == "diffusion_decoder"
    assert record["parallel"] == {"world": 2, "tp": 2, "dp": 1, "diffusion_decoder": {"cfg": 2, "sp": 1}}
    a, b = (read_mp4(tmp_path / f"{name}/input/input.mp4") for name in ("one", "two"))
    assert a.shape == b.shape and a.shape[0] == 33
    # fp32 on CPU: a batch of one row against two may round differently in the last bit, never by a grey level
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and a.std() > 1


def test_data_parallel_batch_writes_every_sample_once(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    lines = []
    for i in range(5):
        shutil.copy(clips / f"batch_inputs_{i % 5}.mp4", tmp_path / f"clip{i}.mp4")
        lines.append(json.dumps({"prompt": PROMPT, "visual_input": f"clip{i}.mp4"}))
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(lines))
    out = tmp_path / "out"
    args = ["--batch-input", str(batch), "--output-dir", str(out), "--gpus", "2", "--tp", "1"]
    done = run_cli(tiny_checkpoints, *args)
    assert done.returncode == 0, done.stderr
    videos = sorted(p.name for p in out.glob("*/*.mp4"))
    assert videos == [f"00{i}_clip{i}.mp4" for i in range(5)]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["succeeded"] * 5
    again = run_cli(tiny_checkpoints, *args)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["skipped"] * 5


def test_bad_tp_size_is_one_line(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    out = run_cli(tiny_checkpoints, "--input", str(clip), "--prompt", PROMPT, "--gpus", "2", "--tp", "3",
                  "--output-dir", str(tmp_path))  # fmt: skip
    assert out.returncode == 2
    assert "--tp 3" in out.stderr and "Traceback" not in out.stderr


def test_dummy_weights_need_only_the_model_folder_and_run_data_parallel(tiny_checkpoints, tmp_path):
    """``--load-format dummy`` builds every stage at random (the DP benchmark at the real shape uses it)."""
    ckpt = tmp_path / "ckpt"
    (ckpt / TINY_AR_DIR).mkdir(parents=True)
    shutil.copy(tiny_checkpoints / TINY_AR_DIR / "cosmos_arch.json", ckpt / TINY_AR_DIR)
    clips = shared_path("data", "clips")
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps({"prompt": PROMPT, "visual_input": str(clips / f"batch_inputs_{i}.mp4")})
                               for i in range(3)))  # fmt: skip
    out = tmp_path / "out"
    done = run_cli(ckpt, "--load-format", "dummy", "--batch-input", str(batch), "--output-dir", str(out),
                   "--gpus", "2", "--tp", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*/*.mp4")) == [f"00{i}_batch_inputs_{i}.mp4" for i in range(3)]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/generation.json"))]
    assert {r["config"]["load_format"] for r in records} == {"dummy"}
    assert {r["parallel"]["dp"] for r in records} == {2}
    assert not any(ckpt.rglob("*.pt")), "dummy weights must not write checkpoints"
