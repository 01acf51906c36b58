"""``check_guardrail_available``: one-line errors for a missing extra or missing files, before any load."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_cli.errors import BadInput, CosmosError, ModelNotDownloaded
from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING, check_guardrail_available
from cosmos_cli.guardrail.layout import GuardrailLayout
from cosmos_cli.stages.standin_files.blocklist import write_blocklist

MODEL_FILES = (
    "aegis/models--meta-llama--LlamaGuard-7b/snapshots/abc/config.json",
    "aegis/models--nvidia--Aegis-AI-Content-Safety-LlamaGuard-Defensive-1.0/snapshots/def/adapter_config.json",
    "video_content_safety_filter/models--google--siglip-so400m-patch14-384/snapshots/123/config.json",
    "video_content_safety_filter/safety_filter.pt",
    "face_blur_filter/Resnet50_Final.pth",
)


def _folder(tmp_path: Path, model_files=MODEL_FILES) -> Path:
    """A guardrail folder with real word lists and nltk data, and empty placeholders for the model files."""
    folder = tmp_path / "checkpoints" / "Cosmos-1.0-Guardrail"
    write_blocklist(folder / "blocklist")
    for name in model_files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


def test_complete_folder_passes_every_mode(tmp_path):
    folder = _folder(tmp_path)
    for mode in ("full", "blocklist", "off"):
        check_guardrail_available(mode, folder)


def test_missing_folder_names_the_download_command(tmp_path):
    missing = tmp_path / "checkpoints" / "Cosmos-1.0-Guardrail"
    with pytest.raises(ModelNotDownloaded) as err:
        check_guardrail_available("blocklist", missing)
    message = str(err.value)
    assert str(missing) in message and "cosmos-cli download" in message
    assert str(tmp_path / "checkpoints") in message and "\n" not in message


def test_off_needs_nothing(tmp_path):
    check_guardrail_available("off", tmp_path / "absent")


@pytest.mark.parametrize(
    ("absent", "expected"),
    [
        (MODEL_FILES[0], "models--meta-llama--LlamaGuard-7b"),
        (MODEL_FILES[1], "models--nvidia--Aegis-AI-Content-Safety-LlamaGuard-Defensive-1.0"),
        (MODEL_FILES[2], "models--google--siglip-so400m-patch14-384"),
        (MODEL_FILES[3], "safety_filter.pt"),
        (MODEL_FILES[4], "Resnet50_Final.pth"),
    ],
)
def test_full_mode_names_the_first_missing_model_file(tmp_path, absent, expected):
    folder = _folder(tmp_path, [f for f in MODEL_FILES if f != absent])
    check_guardrail_available("blocklist", folder)  # the blocklist alone is complete
    with pytest.raises(ModelNotDownloaded, match=expected):
        check_guardrail_available("full", folder)


def test_missing_nltk_data_is_reported(tmp_path):
    folder = _folder(tmp_path)
    (folder / "blocklist" / "nltk_data" / "corpora" / "wordnet").rename(folder / "elsewhere")
    with pytest.raises(ModelNotDownloaded, match="corpora/wordnet"):
        check_guardrail_available("blocklist", folder)
    # nltk.download leaves zips, which nltk reads as well
    (folder / "blocklist" / "nltk_data" / "corpora" / "wordnet.zip").write_bytes(b"")
    check_guardrail_available("blocklist", folder)


def test_snapshot_is_found_through_refs_main(tmp_path):
    folder = _folder(tmp_path)
    cache = folder / "aegis" / "models--meta-llama--LlamaGuard-7b"
    (cache / "snapshots" / "other").mkdir()
    layout = GuardrailLayout(folder)
    assert layout.llamaguard_snapshot() is None  # two snapshots and no ref: ambiguous
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc\n")
    assert layout.llamaguard_snapshot() == cache / "snapshots" / "abc"


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real_find_spec(name, *a)
    )
    check_guardrail_available("blocklist", folder)  # OpenCV is only needed for the face pixelation
    with pytest.raises(CosmosError) as err:
        check_guardrail_available("full", folder)
    message = str(err.value)
    assert "needs opencv-python-headless (not installed)" in message  # pip's name, not the import name cv2
    assert "pip install 'cosmos-ar-cli[guardrail]'" in message


def test_unknown_mode_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="full, blocklist, off"):
        check_guardrail_available("strict", tmp_path)


def test_the_check_imports_no_model_code(tmp_path):
    folder = _folder(tmp_path)
    code = (
        "import sys; from cosmos_cli.guardrail import check_guardrail_available;"
        f"check_guardrail_available('full', {str(folder)!r});"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'nltk', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_off_warning_names_the_licence_clause():
    assert "NVIDIA Open Model License" in GUARDRAIL_OFF_WARNING
    assert "section 2.1" in GUARDRAIL_OFF_WARNING and "terminates" in GUARDRAIL_OFF_WARNING


def test_tiny_folder_is_complete_and_runs_in_full_mode(tmp_path):
    import numpy as np

    from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage
    from cosmos_cli.tiny.guardrail import write_tiny_guardrail

    folder = write_tiny_guardrail(tmp_path / "checkpoints", seed=1)
    assert folder == tmp_path / "checkpoints" / "Cosmos-1.0-Guardrail"
    assert [p.name for p in folder.parent.iterdir()] == ["Cosmos-1.0-Guardrail"]  # no staging left behind
    check_guardrail_available("full", folder)
    text, video = TextGuardrailStage(folder), VideoGuardrailStage(folder)
    text.load("cpu")
    video.load("cpu")
    text.check("A robot arm picks up a red cup.")
    frames = np.zeros((2, 48, 64, 3), dtype=np.uint8)
    out, faces = video.run(frames)
    assert faces == 0 and (out == frames).all()
    write_tiny_guardrail(tmp_path / "checkpoints", seed=1, faces="everywhere")  # replaces the old copy
    assert [p.name for p in folder.parent.iterdir()] == ["Cosmos-1.0-Guardrail"]
