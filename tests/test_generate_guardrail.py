"""The guardrail through `cosmos-cli generate`: exit 3 / exit 4 with nothing written, fail closed, off, missing."""

from __future__ import annotations

import json
import shutil

import pytest

from cosmos_cli.cli import main
from cosmos_cli.tiny.guardrail import write_tiny_guardrail
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A car drives down a quiet road."


@pytest.fixture
def checkpoint_copy(tiny_checkpoints, tmp_path):
    """The tiny tree with its own guardrail folder (linked everything else), so a test can replace it."""
    root = tmp_path / "ckpt"
    root.mkdir()
    for child in tiny_checkpoints.iterdir():
        if child.name != "Cosmos-1.0-Guardrail":
            (root / child.name).symlink_to(child)
    return root


def generate(root, out, *args: str) -> int:
    clip = shared_path("data", "clips", "input.mp4")
    return main(["generate", "--checkpoint-dir", str(root), "--ar-model-dir", TINY_AR_DIR, "--input", str(clip),
                 "--output-dir", str(out), "--disable-diffusion-decoder", *args])  # fmt: skip


@pytest.mark.parametrize(
    ("llm", "video", "code", "message"),
    [
        ("unsafe", "safe", 3, "guardrail blocked the prompt (aegis"),
        ("raise", "safe", 3, "guardrail blocked the prompt (aegis: check failed"),
        ("safe", "unsafe", 4, "guardrail blocked the video"),
        ("safe", "raise", 4, "guardrail blocked the video"),
    ],
)
def test_blocked_or_failing_checks_write_nothing(checkpoint_copy, tmp_path, capsys, llm, video, code, message):
    write_tiny_guardrail(checkpoint_copy, llm_verdict=llm, video_verdict=video)
    out = tmp_path / "out"
    assert generate(checkpoint_copy, out, "--prompt", PROMPT) == code
    assert message in capsys.readouterr().err
    assert not list(out.rglob("*.mp4"))
    record = json.loads((out / "input" / "generation.json").read_text())
    assert record["status"] == "blocked"


def test_faces_are_counted_in_the_record(checkpoint_copy, tmp_path):
    write_tiny_guardrail(checkpoint_copy, faces="everywhere")
    out = tmp_path / "out"
    assert generate(checkpoint_copy, out, "--prompt", PROMPT) == 0
    record = json.loads((out / "input" / "generation.json").read_text())
    assert record["faces_pixelated"] > 0


def test_guardrail_off_warns_and_runs(checkpoint_copy, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate(checkpoint_copy, out, "--prompt", "a forbiddenword scene", "--guardrail", "off") == 0
    assert "section 2.1" in capsys.readouterr().err
    assert (out / "input" / "input.mp4").exists()


def test_missing_guardrail_folder_is_one_line_before_loading(checkpoint_copy, tmp_path, capsys):
    out = tmp_path / "out"
    assert generate(checkpoint_copy, out, "--prompt", PROMPT) == 2
    err = capsys.readouterr().err
    assert "Cosmos-1.0-Guardrail" in err and "cosmos-cli download" in err and "Traceback" not in err
    assert not out.exists()


def test_blocklist_mode_skips_the_llm(checkpoint_copy, tmp_path):
    write_tiny_guardrail(checkpoint_copy, llm_verdict="unsafe")
    shutil.rmtree(checkpoint_copy / "Cosmos-1.0-Guardrail" / "aegis")
    out = tmp_path / "out"
    assert generate(checkpoint_copy, out, "--prompt", PROMPT, "--guardrail", "blocklist") == 0
