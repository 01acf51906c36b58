"""Loading released AR checkpoints: strict keys and shapes, readable errors, safetensors, dummy weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from cosmos_cli.cli import main
from cosmos_cli.errors import BadInput, CheckpointMismatch
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import build_model, random_state_dict, read_state_dict
from tests.conftest import TINY_AR_DIR, shared_path

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def state():
    return random_state_dict(TINY_V2W, seed=1)


def save(tmp_path, state, name="model.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def load(path):
    return build_model(TINY_V2W, weights=path, dtype=torch.float32, device=CPU)


def test_released_format_loads_with_prefix_wrapper_and_extra_state(tmp_path, state):
    wrapped = {"model": {**state, "model.layers.0.attention._extra_state": torch.zeros(3)}}
    model = load(save(tmp_path, wrapped))
    key = "model.layers.1.feed_forward.w2.weight"
    assert torch.equal(model.state_dict()[key.removeprefix("model.")], state[key])


def test_safetensors_is_accepted(tmp_path, state):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = load(path)
    assert torch.equal(model.output.weight, state["model.output.weight"])


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.pop("model.layers.1.attention.wk.weight"), "missing keys layers.1.attention.wk.weight"),
        (lambda s: s.__setitem__("model.layers.9.attention.wq.weight", torch.zeros(1)), "unexpected keys layers.9"),
        (lambda s: s.__setitem__("model.norm.weight", torch.ones(7)), "wrong shapes norm.weight (7,) != (128,)"),
    ],
)
def test_mismatched_keys_name_the_first_offenders(tmp_path, state, mutate, expected):
    broken = dict(state)
    mutate(broken)
    with pytest.raises(CheckpointMismatch) as err:
        load(save(tmp_path, broken))
    assert expected in str(err.value)
    assert "--ar-model-dir" in str(err.value)


def test_truncated_file_is_a_clear_error(tmp_path, state):
    path = save(tmp_path, state)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointMismatch) as err:
        read_state_dict(path)
    assert "truncated" in str(err.value) and "cosmos-cli download" in str(err.value)


def test_missing_file_and_wrong_directory(tmp_path, tiny_checkpoints, capsys):
    with pytest.raises(BadInput):
        read_state_dict(tmp_path / "nope.pt")
    clip = shared_path("data", "clips", "input.mp4")
    argv = ["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", "Some-Other-Model",
            "--input", str(clip), "--prompt", "x"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot tell the model size" in err and "Traceback" not in err


def test_dummy_weights_need_no_files(tmp_path):
    model = build_model(TINY_V2W, weights=None, dtype=torch.float32, device=CPU)
    assert model.output.weight.shape == (TINY_V2W.output_rows, TINY_V2W.dim)
    assert float(model.output.weight.std()) > 0


def test_a_wrong_size_checkpoint_in_the_tiny_folder_is_refused(tiny_checkpoints, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for child in tiny_checkpoints.iterdir():
        (folder / child.name).symlink_to(child)
    (folder / TINY_AR_DIR).unlink()
    (folder / TINY_AR_DIR).mkdir()
    for name in ("cosmos_arch.json",):
        (folder / TINY_AR_DIR / name).symlink_to(tiny_checkpoints / TINY_AR_DIR / name)
    broken = random_state_dict(TINY_V2W)
    broken["model.output.weight"] = torch.zeros(5, 128)
    torch.save(broken, folder / TINY_AR_DIR / "model.pt")
    clip = shared_path("data", "clips", "input.mp4")
    argv = ["generate", "--checkpoint-dir", str(folder), "--ar-model-dir", TINY_AR_DIR, "--input", str(clip),
            "--prompt", "a road", "--output-dir", str(tmp_path / "out"), "--guardrail", "off"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "wrong shapes output.weight (5, 128) != (1600, 128)" in err
    assert not list((tmp_path / "out").rglob("*.mp4"))
