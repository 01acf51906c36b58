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
