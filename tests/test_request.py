"""The generate request: one validator for flags, JSONL lines and serve, before any model loads.

The CLI cases run the real ``cosmos-cli`` in a subprocess against an EMPTY checkpoint folder: a value
checked before anything loads fails with its own one line; one checked later would fail on the missing
``model.pt`` instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_cli.errors import BadInput
from cosmos_cli.request import RULES, SampleRequest, read_jsonl, sample_from_fields, validate
from tests.conftest import REPO, shared_path


def cosmos(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_cli", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=120
    )


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same CLI through its entry point in this process (no interpreter start-up per case)."""
    from cosmos_cli.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", str(2**70)], f"--seed must be in [0, 2**63), got {2**70}"),
        (["--seed", str(2**63)], "--seed must be in [0, 2**63)"),
        (["--seed", "-1"], "--seed must be in [0, 2**63), got -1"),
        (["--dd-seed", str(2**64)], "--dd-seed must be in [0, 2**63)"),
        (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
        (["--top-p", "nan"], "--top-p must be in (0, 1]"),
        (["--temperature", "-0.5"], "--temperature must be 0 or more, got -0.5"),
        (["--fps", "0"], "--fps must be positive, got 0.0"),
        (["--batch-size", "-1"], "--batch-size must be 1 or more, got -1"),
        (["--num-input-frames", "5"], "--num-input-frames must be 1 or 9, got 5"),
        (["--gpus", "0"], "--gpus must be at least 1, got 0"),
        (["--text-encoder-dtype", "fp8"], "--text-encoder-dtype must be bf16 or fp32"),
    ],
)
def test_bad_flags_are_one_line_before_any_model_loads(tmp_path, capsys, flags, message):
    clip = shared_path("data", "clips", "input.mp4")
    run = cosmos if flags[0] == "--seed" and flags[1] == str(2**70) else lambda *a: in_process(capsys, *a)
    out = run("generate", "--checkpoint-dir", str(tmp_path), "--input", str(clip), "--prompt", "x",
                 "--output-dir", str(tmp_path / "out"), *flags)  # fmt: skip
    assert message in one_line_error(out)
    assert not (tmp_path / "out").exists()


def _batch(tmp_path: Path, *lines: dict | str) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


GOOD = {"prompt": "a road", "visual_input": "clip.mp4"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({**GOOD, "seed": "3"}, 'batch.jsonl:2: seed must be an integer, got "3"'),
        ({**GOOD, "seed": 2**70}, "batch.jsonl:2: seed must be in [0, 2**63)"),
        ({**GOOD, "seed": 1.5}, "batch.jsonl:2: seed must be an integer, got 1.5"),
        ({**GOOD, "seed": True}, "batch.jsonl:2: seed must be an integer, got true"),
        ({**GOOD, "top_p": 2}, "batch.jsonl:2: top_p must be in (0, 1], got 2.0"),
        ({**GOOD, "temperature": "hot"}, 'batch.jsonl:2: temperature must be a number, got "hot"'),
        ({**GOOD, "prompt": 7}, "batch.jsonl:2: prompt must be a string, got 7"),
        ({**GOOD, "visual_input": ["a.mp4"]}, "batch.jsonl:2: visual_input must be a path (string)"),
        ({**GOOD, "num_input_frames": 5}, "batch.jsonl:2: num_input_frames must be 1 or 9, got 5"),
        ({**GOOD, "sed": 3}, "batch.jsonl:2: unknown field 'sed'"),
        ("{not json", "batch.jsonl:2 is not valid JSON"),
    ],
)
def test_jsonl_fields_are_typed_and_name_the_line(tmp_path, capsys, bad, message):
    batch = _batch(tmp_path, GOOD, bad)
    run = cosmos if message.startswith('batch.jsonl:2: seed must be an integer, got "3"') else (
        lambda *a: in_process(capsys, *a)
    )
    out = run("generate", "--checkpoint-dir", str(tmp_path), "--batch-input", str(batch),
                 "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert message in one_line_error(out)
    with pytest.raises(BadInput, match="batch.jsonl:2"):
        read_jsonl(batch, SampleRequest())


def test_jsonl_lines_keep_their_names_and_defaults(tmp_path):
    batch = _batch(tmp_path, GOOD, "", {**GOOD, "seed": 5, "top_p": 1, "visual_input": "/abs/other.mp4"})
    first, second = read_jsonl(batch, SampleRequest(seed=9, num_input_frames=1))
    assert (first.name, first.seed, first.num_input_frames, first.top_p) == ("000_clip", 9, 1, None)
    assert first.visual_input == tmp_path / "clip.mp4"
    assert (second.name, second.seed, second.top_p) == ("002_other", 5, 1.0)
    assert second.visual_input == Path("/abs/other.mp4")


def test_form_fields_use_the_same_validator():
    assert sample_from_fields({"seed": " 7 ", "top_p": "0.5"}, ("seed", "top_p")).seed == 7
    with pytest.raises(BadInput, match=r"^seed must be in \[0, 2\*\*63\)"):
        sample_from_fields({"seed": str(2**70)}, ("seed",))
    with pytest.raises(BadInput, match="^temperature must be a finite number"):
        sample_from_fields({"temperature": "inf"}, ("temperature",))


def test_a_rule_applies_by_field_name_wherever_the_field_is():
    from dataclasses import dataclass

    @dataclass
    class Later:  # what another engineer's new run-level field looks like
        fps: float = 25.0
        inner: SampleRequest | None = None

    validate(Later())
    with pytest.raises(BadInput, match="--fps must be positive"):
        validate(Later(fps=-1))
    with pytest.raises(BadInput, match="--seed must be"):
        validate(Later(inner=SampleRequest(seed=-3)))
    assert {"top_p", "temperature", "seed", "fps", "batch_size"} <= set(RULES)
