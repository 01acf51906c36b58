"""NeMo 2 checkpoints: read with torch alone, inverse-mapped strictly, converted both ways, run by generate.

Folders are written as megatron-core lays them out (``tests/nemo_fixtures.py``, spec ``nemo.md`` section 5)
for both families, fp32 and bf16, stacked and per-layer keys, with ``_extra_state`` and optimizer decoys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from cosmos_cli.checkpoints import ARCH_FILE, CheckpointLayout
from cosmos_cli.cli import main
from cosmos_cli.errors import CheckpointMismatch
from cosmos_cli.models.ar.weights import build_model, read_state_dict
from cosmos_cli.models.config import PRESETS
from cosmos_cli.nemo.config import infer_args
from cosmos_cli.nemo.dist_reader import DistCheckpoint
from cosmos_cli.nemo.mapping import sources
from cosmos_cli.nemo.state import NemoCheckpoint
from tests.conftest import REPO, TINY_AR_DIR, shared_path
from tests.nemo_fixtures import FAMILIES, SPEC_V2W, random_state, save_model_pt, write_fixture

CPU = torch.device("cpu")


@torch.no_grad()
def prefill_logits(model, args) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, args.output_rows, (2, 9), generator=gen)
    model.setup_caches(2, torch.float32, CPU)
    if args.cross_attn_every_k_layers:
        model.set_context(torch.randn(2, args.context_len, args.context_dim, generator=gen))
    return model(tokens, torch.arange(9), prefill=True)


@pytest.mark.parametrize("family", ["video2world", "base"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("stacked", [True, False])
def test_every_tensor_round_trips_bit_exactly(tmp_path, family, dtype, stacked):
    args = FAMILIES[family]
    state = random_state(args, seed=1, dtype=dtype)
    write_fixture(tmp_path / "nemo", args, state, stacked=stacked)
    checkpoint = NemoCheckpoint(tmp_path / "nemo")
    assert checkpoint.args == args and checkpoint.notes == []
    assert checkpoint.stacked == stacked and checkpoint.dtype == dtype
    assert len(checkpoint.skipped) == 6 and len(checkpoint.dist.byte_items) == args.n_layers  # decoys: never read
    back = checkpoint.state_dict()
    assert back.keys() == state.keys()
    for key, tensor in state.items():
        assert back[key].dtype == dtype and torch.equal(back[key], tensor), key


@pytest.mark.parametrize("family", ["video2world", "base"])
@pytest.mark.parametrize("stacked", [True, False])
def test_logits_from_the_nemo_folder_equal_those_from_model_pt(tmp_path, family, stacked):
    args = FAMILIES[family]
    state = random_state(args, seed=2, dtype=torch.bfloat16)
    write_fixture(tmp_path / "nemo", args, state, stacked=stacked)
    model_pt = save_model_pt(tmp_path / "released", args, state)
    layout = CheckpointLayout(tmp_path, "nemo")
    assert layout.ar_weights == tmp_path / "nemo" / "weights"
    from_nemo = build_model(args, weights=layout.ar_weights, dtype=torch.float32, device=CPU)
    from_pt = build_model(args, weights=model_pt, dtype=torch.float32, device=CPU)
    assert torch.equal(prefill_logits(from_nemo, args), prefill_logits(from_pt, args))


def test_qkv_and_cross_kv_follow_mcore_group_order(tmp_path):
    """The NeMo rows themselves: per KV group G query heads then k then v; cross ``[2*ng*hn, c]`` k then v."""
    args = SPEC_V2W
    state = random_state(args, seed=4)
    nemo = write_fixture(tmp_path / "nemo", args, state, with_decoys=False)
    qkv = nemo["module.decoder.layers.self_attention.linear_qkv.weight"][1]
    hn, g = args.head_dim, args.n_heads // args.n_kv_heads
    block = qkv[(g + 2) * hn : 2 * (g + 2) * hn]  # group 1
    assert torch.equal(block[: g * hn], state["layers.1.attention.wq.weight"][g * hn :])
    assert torch.equal(block[g * hn : (g + 1) * hn], state["layers.1.attention.wk.weight"][hn:])
    kv = nemo["module.decoder.layers.cross_attention.linear_kv.weight"][0]
    assert kv.shape == (2 * args.n_kv_heads * hn, args.context_dim) == (64, 24)  # not [2c, c] = [48, 24]
    assert torch.equal(kv[hn : 2 * hn], state["layers.0.cross_attention.wv.weight"][:hn])
    fc1 = nemo["module.decoder.layers.mlp.linear_fc1.weight"][0]
    assert torch.equal(
        fc1, torch.cat([state["layers.0.feed_forward.w1.weight"], state["layers.0.feed_forward.w3.weight"]])
    )


def test_lazy_slices_read_only_their_rows(tmp_path):
    args = SPEC_V2W
    state = random_state(args, seed=5)
    write_fixture(tmp_path / "nemo", args, state)
    checkpoint = NemoCheckpoint(tmp_path / "nemo")
    read = []
    original = DistCheckpoint._read_chunk
    checkpoint.dist._read_chunk = lambda key, chunk, region: (
        read.append(region) or original(checkpoint.dist, key, chunk, region)
    )
    lazy = checkpoint.state_dict(lazy=True)
    half = lazy["layers.1.attention.wq.weight"].narrow(0, 32, 32)
    assert torch.equal(half, state["layers.1.attention.wq.weight"][32:])
    assert read == [((1, 2), (64, 128), (0, 64))]  # layer 1, KV group 1 of linear_qkv only ((2+2)*16 rows)
    assert torch.equal(
        lazy["layers.0.cross_attention.wk.weight"].narrow(0, 0, 16), state["layers.0.cross_attention.wk.weight"][:16]
    )
    assert torch.equal(
        lazy["layers.0.attention.wo.weight"].narrow(1, 32, 32), state["layers.0.attention.wo.weight"][:, 32:]
    )


def test_model_yaml_is_read_and_missing_fields_come_from_shapes(tmp_path, capsys):
    args = SPEC_V2W
    write_fixture(tmp_path / "nemo", args, random_state(args))
    yaml_path = tmp_path / "nemo" / "context" / "model.yaml"
    data = yaml.safe_load(yaml_path.read_text())
    data["config"]["layernorm_epsilon"] = 1e-6
    for field in ("num_layers", "kv_channels", "crossattn_emb_size"):
        del data["config"][field]
    yaml_path.write_text(yaml.safe_dump(data))
    checkpoint = NemoCheckpoint(tmp_path / "nemo")
    assert checkpoint.args.norm_eps == 1e-6  # model.yaml wins over our cosmos_arch.json
    assert checkpoint.args.n_layers == 2 and checkpoint.args.head_dim == 16 and checkpoint.args.context_dim == 24
    assert checkpoint.notes == ["context/model.yaml lacks num_layers, kv_channels, crossattn_emb_size: "
                                "num_layers, kv_channels, crossattn_emb_size from the tensor shapes"]  # fmt: skip
    data["config"]["num_query_groups"] = 4
    yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointMismatch, match="num_query_groups|n_kv_heads=4 but the tensors have 2"):
        NemoCheckpoint(tmp_path / "nemo")


def test_released_sizes_are_recognised_from_shapes_without_arch_file(tmp_path):
    for key in ("5b-video2world", "4b", "12b", "13b-video2world"):
        preset = PRESETS[key]
        shapes = {(s.nemo, s.layer): (1,) for s in sources(preset).values()}
        hn, q = preset.head_dim, preset.n_heads * preset.head_dim
        shapes[("embedding.word_embeddings.weight", None)] = (preset.embedding_rows, preset.dim)
        for i in range(preset.n_layers):
            shapes[("self_attention.linear_proj.weight", i)] = (preset.dim, q)
            shapes[("self_attention.linear_qkv.weight", i)] = (q + 2 * preset.n_kv_heads * hn, preset.dim)
            shapes[("mlp.linear_fc2.weight", i)] = (preset.dim, preset.ffn_hidden_size)
            shapes[("self_attention.q_layernorm.weight", i)] = (hn,)
            if preset.cross_attn_every_k_layers:
                shapes[("cross_attention.linear_kv.weight", i)] = (2 * preset.n_kv_heads * hn, preset.context_dim)
        config = {"rotary_base": 500000, "layernorm_epsilon": 1e-5}
        if preset.yarn is not None:
            config.update(apply_yarn=True, original_latent_shape=[3, 40, 64], yarn_scale=2, yarn_beta_fast=4,
                          yarn_beta_slow=1)  # fmt: skip
        args, notes = infer_args(config, shapes, tmp_path)
        assert args == preset, key
        assert "from the tensor shapes" in notes[0]


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
    args = SPEC_V2W
    write_fixture(tmp_path / "zarr", args, random_state(args))
    (tmp_path / "zarr" / "weights" / "metadata.json").write_text(json.dumps({"sharded_backend": "zarr"}))
    assert main(["convert-checkpoint", str(tmp_path / "zarr"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'zarr' NeMo checkpoint; only the torch_dist format" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    nemo_state = write_fixture(tmp_path / "missing", args, random_state(args), with_decoys=False)
    nemo_state.pop("module.decoder.layers.cross_attention.linear_kv.weight")
    nemo_state["module.decoder.layers.bogus.weight"] = torch.zeros(2, 3)
    from cosmos_cli.nemo.convert import write_nemo_folder

    write_nemo_folder(nemo_state, args, tmp_path / "missing", overwrite=True)
    with pytest.raises(CheckpointMismatch) as err:
        read_state_dict(tmp_path / "missing" / "weights")
    assert "missing: cross_attention.linear_kv.weight (layer 0)" in str(err.value)
    assert "unexpected: module.decoder.layers.bogus.weight" in str(err.value)
    assert main(["convert-checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    assert "missing: cross_attention.linear_kv.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("family", ["video2world", "base"])
def test_convert_checkpoint_round_trip_both_ways(tmp_path, family, capsys):
    args = FAMILIES[family]
    state = random_state(args, seed=6, dtype=torch.bfloat16)
    original = write_fixture(tmp_path / "nemo", args, state)
    # The weights/ subfolder works as well as the root.
    assert main(["convert-checkpoint", str(tmp_path / "nemo" / "weights"), "--output", str(tmp_path / "rel")]) == 0
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["config.json", ARCH_FILE, "model.pt"]
    released = torch.load(tmp_path / "rel" / "model.pt", weights_only=True)
    assert released.keys() == {"model." + k for k in state}
    assert all(
        torch.equal(released["model." + k], v) and released["model." + k].dtype == v.dtype for k, v in state.items()
    )
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["family"] == family and config["n_kv_heads"] == 2

    assert main(["convert-checkpoint", str(tmp_path / "rel"), "--to", "nemo", "--output", str(tmp_path / "n2")]) == 0
    assert main(["convert-checkpoint", str(tmp_path / "rel"), "--to", "nemo", "--output", str(tmp_path / "n2")]) == 2
    assert "already exists" in capsys.readouterr().err
    again = DistCheckpoint(tmp_path / "n2" / "weights")
    assert set(again.tensors) == set(original)
    for key, tensor in original.items():
        assert torch.equal(again.read(key), tensor), key
    assert json.loads((tmp_path / "n2" / "weights" / "metadata.json").read_text())["sharded_backend"] == "torch_dist"
    assert torch.load(tmp_path / "n2" / "weights" / "common.pt", weights_only=False) == {}


def test_generate_gives_the_same_video_from_nemo_and_model_pt(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    nemo = tmp_path / "Tiny-NeMo" / "checkpoints" / "epoch=0-step=9"
    source = tiny_checkpoints / TINY_AR_DIR
    assert main(["convert-checkpoint", str(source), "--to", "nemo", "--per-layer", "--output", str(nemo)]) == 0
    assert (nemo / ARCH_FILE).exists()  # the tiny vocabulary and grid: no released preset has them
    from cosmos_cli.io.video import read_mp4

    videos = []
    for ar_dir in (TINY_AR_DIR, str(nemo)):
        out = tmp_path / f"out{len(videos)}"
        argv = ["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", ar_dir, "--input",
                str(clip), "--prompt", "a road", "--output-dir", str(out), "--disable-diffusion-decoder",
                "--seed", "5"]  # fmt: skip
        assert main(argv) == 0
        videos.append(read_mp4(out / "input" / "input.mp4"))
    assert videos[0].shape == (33, 64, 96, 3)
    assert (videos[0] == videos[1]).all()


def test_tensor_parallel_ranks_and_megatron_core_read_the_folder(tmp_path):
    """Two gloo ranks: TP=2 from the NeMo folder equals TP=2 from model.pt; each rank reads about half;
    megatron-core's ``dist_checkpointing.load_plain_tensors`` reads every tensor we wrote."""
    args = SPEC_V2W
    state = random_state(args, seed=7)
    write_fixture(tmp_path / "nemo", args, state)
    save_model_pt(tmp_path / "released", args, state)
    script = REPO / "tests" / "dist_scripts" / "nemo_tp.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in results:
        assert r["tp_equal_model_pt"] and r["tp_vs_dense"] <= 1e-5
        assert r["sharded_bytes_read"] <= 0.55 * r["sharded_bytes_total"]
        assert r["mcore_keys_equal"] and r["mcore_tensors_equal"]
