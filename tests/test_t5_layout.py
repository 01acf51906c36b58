"""NVIDIA's checkout as is: T5 in the Hugging Face cache layout that ``from_pretrained(cache_dir=...)`` leaves.

The hub-cache tree is built from the tiny checkpoints the way huggingface_hub writes one: files stored once
under ``blobs/<sha256>``, ``snapshots/<commit>/<name>`` relative symlinks to them, ``refs/main`` naming the
commit. It must give the same T5 embedding and the same video as the plain ``google-t5/t5-11b/`` layout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosmos_cli.checkpoints import T5_DIR, CheckpointLayout, hub_cache_dir, resolve_t5_dir
from cosmos_cli.cli import main
from cosmos_cli.errors import BadInput, ModelNotDownloaded
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective."
COMMIT = "90f37703b3334dfe9d2b009bfcbfbf1ac9d28ea3"


def write_hub_cache(t5_folder: Path, root: Path, commit: str = COMMIT, ref: bool = True) -> Path:
    """``root/models--google-t5--t5-11b`` holding ``t5_folder``'s files as snapshot ``commit``."""
    cache = hub_cache_dir(root, T5_DIR)
    snapshot = cache / "snapshots" / commit
    for path in sorted(t5_folder.rglob("*")):
        if not path.is_file():
            continue
        blob = cache / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(t5_folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (cache / "refs").mkdir(exist_ok=True)
        (cache / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def nvidia_checkout(tiny_checkpoints, tmp_path) -> Path:
    """The tiny tree with T5 only in the hub-cache layout (every other folder linked as is)."""
    root = tmp_path / "nvidia-checkpoints"
    root.mkdir()
    for child in tiny_checkpoints.iterdir():
        if child.name != T5_DIR.split("/")[0]:
            (root / child.name).symlink_to(child)
    write_hub_cache(tiny_checkpoints / T5_DIR, root)
    return root


def test_resolver_picks_the_plain_folder_then_the_ref_then_the_only_snapshot(tmp_path):
    t5 = tmp_path / "src"
    t5.mkdir()
    (t5 / "config.json").write_text("{}")
    assert resolve_t5_dir(tmp_path / "empty") == tmp_path / "empty" / T5_DIR  # missing: download's path
    snapshot = write_hub_cache(t5, tmp_path / "a")
    assert resolve_t5_dir(tmp_path / "a") == snapshot and (snapshot / "config.json").read_text() == "{}"
    other = write_hub_cache(t5, tmp_path / "a", commit="1" * 40, ref=False)
    assert resolve_t5_dir(tmp_path / "a") == snapshot  # refs/main wins over a newer snapshot
    (hub_cache_dir(tmp_path / "a", T5_DIR) / "refs" / "main").unlink()
    with pytest.raises(BadInput, match=f"holds 2 snapshots \\({'1' * 40}, {COMMIT}\\) and no refs/main"):
        resolve_t5_dir(tmp_path / "a")
    shutil.rmtree(snapshot)
    assert resolve_t5_dir(tmp_path / "a") == other  # no ref, one snapshot: that one
    (hub_cache_dir(tmp_path / "a", T5_DIR) / "refs" / "main").write_text(COMMIT)
    with pytest.raises(ModelNotDownloaded, match=f"names snapshot {COMMIT}, but .* is missing"):
        resolve_t5_dir(tmp_path / "a")
    shutil.copytree(t5, tmp_path / "a" / T5_DIR)
    assert resolve_t5_dir(tmp_path / "a") == tmp_path / "a" / T5_DIR  # download's layout first


def test_hub_cache_gives_the_same_embedding(tiny_checkpoints, nvidia_checkout):
    from cosmos_cli.stages.text_encoder import TextEncoderStage

    embeddings = []
    for root in (tiny_checkpoints, nvidia_checkout):
        stage = TextEncoderStage(CheckpointLayout(root).t5_dir)
        stage.load(torch.device("cpu"))
        embeddings.append(stage.encode([PROMPT, "a second prompt"])[0])
    assert CheckpointLayout(nvidia_checkout).t5_dir.parent.name == "snapshots"
    assert embeddings[0].abs().sum() > 0 and torch.equal(embeddings[0], embeddings[1])


def test_generate_and_doctor_read_nvidias_checkout(tiny_checkpoints, nvidia_checkout, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    videos = []
    for name, root in (("plain", tiny_checkpoints), ("hub", nvidia_checkout)):
        argv = ["generate", "--checkpoint-dir", str(root), "--ar-model-dir", TINY_AR_DIR, "--input", str(clip),
                "--prompt", PROMPT, "--seed", "2", "--disable-diffusion-decoder",
                "--output-dir", str(tmp_path / name)]  # fmt: skip
        assert main(argv) == 0
        videos.append((tmp_path / name / "input" / "input.mp4").read_bytes())
    assert videos[0] == videos[1]
    doctor = subprocess.run([sys.executable, "-m", "cosmos_cli", "doctor", "--checkpoint-dir", str(nvidia_checkout),
                             "--ar-model-dir", TINY_AR_DIR, "--guardrail", "off"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    t5_row = next(line for line in doctor.stdout.splitlines() if "T5 text encoder" in line)
    assert "hub cache" in t5_row and COMMIT[:12] in t5_row and "yes" in t5_row
