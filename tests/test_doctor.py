"""`cosmos-cli doctor` answers "can generate run with these flags?": same layout, exit 2 when it cannot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from cosmos_cli.cli import main
from cosmos_cli.commands.doctor import collect
from tests.conftest import TINY_AR_DIR


def doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmos_cli", "doctor", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"})  # fmt: skip


def rows(checkpoints, ar_model_dir=TINY_AR_DIR, guardrail="full") -> dict:
    return {r.check: r for r in collect(checkpoints, ar_model_dir, guardrail)}


def test_empty_folder_is_exit_2_with_the_table_and_one_line(tmp_path):
    out = doctor("--checkpoint-dir", str(tmp_path))
    assert out.returncode == 2
    assert "torch" in out.stdout and "ffmpeg" in out.stdout and "MISSING" in out.stdout
    assert str(tmp_path / "Cosmos-1.0-Autoregressive-5B-Video2World" / "model.pt") in out.stdout
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "generate cannot run: AR model, DV8x16x16 tokenizer, T5 text encoder, guardrail missing" in out.stderr


def test_complete_tree_passes_and_ar_model_dir_is_generates(tiny_checkpoints, capsys):
    found = rows(tiny_checkpoints)
    assert all(r.ok for r in found.values() if r.required)
    assert TINY_AR_DIR in found["AR model"].finding and found["diffusion decoder"].ok
    assert main(["doctor", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR]) == 0
    # without --ar-model-dir it checks the default 5B folder, which the tiny tree lacks
    assert main(["doctor", "--checkpoint-dir", str(tiny_checkpoints)]) == 2
    assert "generate cannot run: AR model missing" in capsys.readouterr().err


def test_only_what_generate_needs_fails_it(tiny_checkpoints, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints, ckpt, ignore=shutil.ignore_patterns("Cosmos-1.0-Diffusion-*", "*Guardrail*"))
    found = rows(ckpt, guardrail="off")
    assert not found["diffusion decoder"].ok and not found["diffusion decoder"].required  # DV decoder used
    assert main(["doctor", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR, "--guardrail", "off"]) == 0
    assert not rows(ckpt)["guardrail"].ok  # --guardrail full (the default) needs the folder
    assert main(["doctor", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR]) == 2
    (ckpt / "google-t5" / "t5-11b" / "tokenizer.json").unlink()
    (ckpt / "google-t5" / "t5-11b" / "spiece.model").unlink(missing_ok=True)
    t5 = rows(ckpt, guardrail="off")["T5 text encoder"]
    assert not t5.ok and t5.required and t5.finding.endswith("tokenizer.json missing")


def test_a_nemo_checkpoint_folder_is_accepted_as_in_generate(tiny_checkpoints, tmp_path):
    nemo = tmp_path / "Tiny-NeMo" / "checkpoints" / "epoch=0-step=9"
    source = tiny_checkpoints / TINY_AR_DIR
    assert main(["convert-checkpoint", str(source), "--to", "nemo", "--output", str(nemo)]) == 0
    found = rows(tiny_checkpoints, str(nemo))
    assert found["AR model"].ok and str(nemo / "weights") in found["AR model"].finding
    assert main(["doctor", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", str(nemo)]) == 0
