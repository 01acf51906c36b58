"""The AR benchmark runs on CPU with the tiny preset and writes the fields docs/benchmarks.md reports."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_ar_json_fields(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "scripts/bench_ar.py", "--preset", "tiny", "--device", "cpu", "--batch-sizes", "1,2",
           "--decode-steps", "8", "--eager-steps", "4", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())  # strict JSON: no NaN
    for key in ("device", "torch", "preset", "params", "prompt_len", "num_new", "copy_bandwidth_GBps", "fast", "eager"):
        assert key in report
    assert [row["batch"] for row in report["fast"]] == [1, 2]
    for row in report["fast"]:
        for key in ("prefill_s", "decode_ms_per_step", "total_decode_s", "tokens_per_s", "floor_ms",
                    "ratio_to_floor", "peak_gib", "warmup_s", "extrapolated"):  # fmt: skip
            assert key in row
        assert row["decode_ms_per_step"] > 0 and row["prefill_s"] > 0
    assert report["fast"][1]["speedup_tokens_per_s_vs_b1"] > 0
    assert "ms/step" in done.stdout


def test_bench_dd_parallel_times_every_layout_on_two_cpu_ranks(tmp_path):
    out = tmp_path / "dd_parallel.json"
    cmd = [sys.executable, "scripts/bench_dd_parallel.py", "--preset", "tiny", "--ranks", "2", "--calls", "1"]
    done = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world"] == 2 and [r["layout"] for r in report["rows"]] == ["1 GPU", "cfg 1 x sp 2", "cfg 2 x sp 1"]
    for row in report["rows"][1:]:
        assert row["s_per_call"] > 0 and row["max_abs_diff_vs_1gpu"] <= 1e-5 * row["ref_scale"]
def test_bench_e2e_tiny_json_fields(tmp_path):
    """The whole-pipeline benchmark on CPU, AR model and diffusion decoder read from real-format files."""
    files = tmp_path / "ck"
    done = subprocess.run([sys.executable, "scripts/write_dummy_checkpoints.py", "--tiny", "--output", str(files)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "e2e.json"
    cmd = [sys.executable, "scripts/bench_e2e.py", "--tiny", "--files", str(files), "--workdir", str(tmp_path / "w"),
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ("command", "date", "device", "torch", "shapes", "weights", "inductor_cache_dir", "cold", "warm",
                "fp8", "batch", "disk", "load", "targets", "wall_s"):  # fmt: skip
        assert key in report, key
    assert report["weights"] == "files" and not report.get("errors")
    for label in ("cold", "warm"):
        video = report[label]
        for stage in ("text_guardrail", "text_encoder", "tokenize", "ar_model", "diffusion_decoder",
                      "video_guardrail", "write_mp4"):  # fmt: skip
            assert video["stages_s"][stage] > 0, (label, stage)
        assert video["wall_s"] >= video["stage_sum_s"] * 0.9 and video["mp4_bytes"] > 0
        assert {"prefill_s", "decode_s", "warmup_s"} <= video["ar"].keys()
    # Cold: the AR model loaded in the foreground; the decoder and video guardrail in the background.
    assert "ar_model" in report["cold"]["foreground_loads_s"]
    assert [*report["cold"]["background_loads"]] == ["diffusion_decoder", "video_guardrail"]
    fp8 = report["fp8"]
    assert fp8["stage_s"] > 0 and 0 < fp8["latent_mean_abs"] < fp8["latent_ref_mean_abs"]
    assert fp8["frames_psnr_db"] is None or fp8["frames_psnr_db"] > 30
    assert fp8["gemm"]["kernel"] == "emulated" and 0 < fp8["gemm"]["rel_err_fp8"] < 0.06
    assert report["batch"]["batch"] == 2 and report["batch"]["per_video_s_composed"] > 0
    assert report["disk"]["cold_GBps"] > 0 and report["load"]["ar_mmap_read_ahead"]["GBps"] > 0
    assert "video wall s" in done.stdout
