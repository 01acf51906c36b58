"""SIGTERM / SIGINT sent to a real ``python -m cosmos_cli generate --batch-input`` process on tiny checkpoints:
no partial files, a summary of what is done and what is not, exit 143 / 130, and a re-run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cosmos_cli.cli import main
from tests.conftest import REPO, TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."
SAMPLES = 17
"""One more than the pipeline's chunk of 16: the second chunk cannot be finished when the first video appears."""


def finished(out: Path) -> dict[str, int]:
    """Sample folder -> mtime of its video, for every sample whose record says succeeded."""
    done = {}
    for record in out.glob("*/generation.json"):
        try:
            if json.loads(record.read_text())["status"] == "succeeded":
                done[record.parent.name] = (record.parent / f"{record.parent.name}.mp4").stat().st_mtime_ns
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now
    return done


def interrupt_when_more_done(argv: list[str], out: Path, sig: signal.Signals, already: int) -> tuple[int, str]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env=dict(os.environ, COSMOS_CLI_NO_PROGRESS="1"))  # fmt: skip
    deadline = time.monotonic() + 300
    while len(finished(out)) <= already and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, f"the batch ended before the signal: {process.communicate()}"
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout + stderr


def test_signals_leave_a_summary_and_the_rerun_resumes(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    lines = [{"prompt": PROMPT, "visual_input": str(clips / f"batch_inputs_{i % 4}.mp4"), "seed": i}
             for i in range(SAMPLES)]  # fmt: skip
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    def args_for(out: Path) -> list[str]:
        return ["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR,
                "--batch-input", str(batch), "--output-dir", str(out), "--disable-diffusion-decoder"]  # fmt: skip

    # Each signal stops a fresh batch inside its first chunk (a later chunk of one sample would finish
    # before the signal lands), so what is done, interrupted and pending is known.
    for sig, code, out in ((signal.SIGINT, 130, tmp_path / "out-int"), (signal.SIGTERM, 143, tmp_path / "out")):
        returncode, output = interrupt_when_more_done([sys.executable, "-m", "cosmos_cli", *args_for(out)], out, sig, 0)
        assert returncode == code, output
        assert f"interrupted by {sig.name}: " in output and "run the same command again to resume" in output
        assert "Traceback" not in output and "Aborted" not in output
        assert not list(out.rglob("*.partial-*")), list(out.rglob("*.partial-*"))
        summary = json.loads((out / "summary.json").read_text())["samples"]
        assert len(summary) == SAMPLES
        done = {s["name"] for s in summary if s["status"] in ("succeeded", "skipped")}
        assert done == set(finished(out)) and 0 < len(done) < SAMPLES, summary
        assert {s["status"] for s in summary if s["name"] not in done} <= {"interrupted", "pending"}
        assert f"{len(done)} of {SAMPLES} sample(s) done" in output

    args = args_for(out)
    before = finished(out)
    assert main(args) == 0  # resumes: the finished samples are skipped (their records match), the rest made
    summary = json.loads((out / "summary.json").read_text())["samples"]
    assert {s["name"] for s in summary if s["status"] == "skipped"} == set(before)
    assert {s["status"] for s in summary if s["name"] not in before} == {"succeeded"}
    after = finished(out)
    assert len(after) == SAMPLES and all(after[name] == mtime for name, mtime in before.items())
