"""The diffusion decoder: golden sets of NVIDIA's reference, checkpoint loading, windows, the stage on tiny
checkpoints, the tiny CV tokenizer and the benchmark's report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosmos_cli.checkpoints import ARCH_FILE, CV_TOKENIZER_DIR, DIFFUSION_DECODER_DIR, CheckpointLayout
from cosmos_cli.errors import BadInput, CheckpointMismatch, ModelNotDownloaded
from cosmos_cli.models.diffusion_decoder.config import DD_7B, DiTConfig
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_
from cosmos_cli.models.diffusion_decoder.rope import band_dims
from cosmos_cli.models.diffusion_decoder.sampler import GuidedDenoiser, sigma_schedule
from cosmos_cli.models.diffusion_decoder.weights import load_network
from cosmos_cli.models.diffusion_decoder.windows import linear_blend, split_with_overlap
from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
from cosmos_cli.stages.standin_files.sizes import tiny_dd_config
from cosmos_cli.tiny.diffusion_decoder import write_tiny_diffusion_decoder

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden-dd"
GOLDEN_SETS = sorted(p for p in GOLDEN.glob("*") if (p / "case.pt").exists()) if GOLDEN.exists() else []
TINY_VOC = 1600


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True
    )


# ---- golden sets ---------------------------------------------------------------------------------
@pytest.mark.skipif(not GOLDEN_SETS, reason=f"no golden diffusion-decoder sets under {GOLDEN}")
@pytest.mark.parametrize("folder", GOLDEN_SETS, ids=lambda p: p.name)
def test_golden_set_matches_reference(folder):
    out = _script("check_golden_dd.py", str(folder))
    assert out.returncode == 0, out.stdout + out.stderr
    for name in (
        "net_out_cond",
        "net_out_uncond",
        "x0_cfg",
        "rope_emb",
        "sample_out",
        "blend_out",
        "split_out_0",
    ):
        assert f"ok   {name}" in out.stdout


def test_golden_check_fails_on_a_wrong_network(tmp_path):
    if not GOLDEN_SETS:
        pytest.skip(f"no golden diffusion-decoder sets under {GOLDEN}")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "case.pt"):
        (broken / name).write_bytes((GOLDEN_SETS[0] / name).read_bytes())
    state = torch.load(GOLDEN_SETS[0] / "model.pt", weights_only=True)
    state["final_layer.linear.weight"] = state["final_layer.linear.weight"] * 1.01
    torch.save(state, broken / "model.pt")
    out = _script("check_golden_dd.py", str(broken))
    assert out.returncode == 1
    assert "FAIL net_out_cond" in out.stdout and "ok   split_out_0" in out.stdout


# ---- configuration and checkpoint loading --------------------------------------------------------
def test_7b_preset_sizes():
    assert DD_7B.head_dim == 128 and band_dims(128) == (42, 44)
    assert DD_7B.patch_in_features == 49 * 4
    assert abs(DD_7B.num_params() - 7.237e9) < 1e7
    assert 4.5e14 < DD_7B.forward_flops(8, 80, 128, 512) < 4.8e14  # about 4.6e14 per forward (issue 9)


def test_config_rejects_inconsistent_derived_sizes():
    with pytest.raises(ValueError, match="head_dim"):
        DiTConfig.from_json({"model_channels": 96, "num_heads": 3, "head_dim": 48})
    with pytest.raises(ValueError, match="block types"):
        DiTConfig(block_config="FA-XX")


def _tiny_net(**overrides) -> DiffusionDecoderDiT:
    net = DiffusionDecoderDiT(dataclasses.replace(tiny_dd_config(100), **overrides))
    init_random_(net, torch.Generator().manual_seed(0))
    return net.eval()


def test_released_layout_loads_and_mismatches_name_the_key():
    net = _tiny_net()
    released = {f"net.{k}": v for k, v in net.state_dict().items()}
    released["logvar.1.weight"] = torch.zeros(1, 128)
    released["net.blocks.block0.blocks.0.block.attn.to_q.0._extra_state"] = torch.zeros(0)
    fresh = _tiny_net()
    init_random_(fresh, torch.Generator().manual_seed(1))
    load_network(fresh, released)
    assert torch.equal(fresh.final_layer.linear.weight, net.final_layer.linear.weight)

    missing = dict(released)
    del missing["net.final_layer.linear.weight"]
    with pytest.raises(CheckpointMismatch, match="missing keys final_layer.linear.weight"):
        load_network(fresh, missing)
    wrong = dict(released, **{"net.token_embedder.weight": torch.zeros(99, 8)})
    with pytest.raises(CheckpointMismatch, match="wrong shapes token_embedder.weight"):
        load_network(fresh, wrong)
    extra = dict(released, **{"net.extra_pos_embedder.pos_emb_h": torch.zeros(3)})
    with pytest.raises(CheckpointMismatch, match="unexpected keys extra_pos_embedder"):
        load_network(fresh, extra)


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_adaln_lora": False},
        {"concat_padding_mask": False, "affline_emb_norm": False},
        {"block_config": "CA-MLP-FA"},
    ],
)
def test_config_variants_run(overrides):
    net = _tiny_net(**overrides)
    x = torch.randn(2, 16, 2, 4, 6)
    tokens = torch.randint(0, 100, (2, 1, 2, 2, 3))
    with torch.no_grad():
        out = net(x, torch.zeros(2), torch.randn(2, 5, net.config.crossattn_emb_channels), tokens)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_bf16_network_rounds_the_rope_tables_like_the_reference():
    """NVIDIA casts the network, buffers included, to bf16: RoPE frequencies and positions round to bf16."""
    net = _tiny_net()
    fps = torch.tensor([24.0])
    exact = net.rope_angles(3, 4, 6, fps)
    net = net.to(torch.bfloat16)
    rounded = net.rope_angles(3, 4, 6, fps.bfloat16())
    assert rounded.dtype == torch.float32 and not torch.equal(rounded, exact)
    dim_h, _ = band_dims(net.config.head_dim)
    spatial = (torch.arange(0, dim_h, 2).float() / dim_h).bfloat16()
    theta = 10000.0 * net.pos_embedder.h_ntk_factor
    freqs = 1.0 / theta**spatial
    want_h = torch.outer(torch.arange(4.0).bfloat16(), freqs).float()
    # angles of token (t=0, h, w=0), the h band sits after the t band
    _, dim_t = band_dims(net.config.head_dim)
    got_h = rounded.reshape(3, 4, 6, -1)[0, :, 0, dim_t // 2 : dim_t // 2 + dim_h // 2]
    assert torch.equal(got_h, want_h)


def test_unconditional_row_uses_token_zero_not_a_zero_vector():
    net = _tiny_net()
    tokens = torch.randint(1, 100, (1, 1, 2, 2, 3))
    denoiser = GuidedDenoiser(net, tokens, torch.randn(1, 5, 48), guidance=1.8, sigma_data=0.5)
    x, sigma = torch.randn(1, 16, 2, 4, 6), torch.tensor([2.0])
    with torch.no_grad():
        before = denoiser.predict(x, sigma).x0
        net.token_embedder.weight[0] += 1.0
        after = denoiser.predict(x, sigma).x0
    assert torch.equal(before[0], after[0])  # the condition never looks up index 0
    assert not torch.allclose(before[1], after[1])


# ---- sampler schedule and windows ------------------------------------------------------------------
def test_sigma_schedule():
    sigmas = sigma_schedule(15, 0.02, 80.0, 7.0)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (16,)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-1].item() == pytest.approx(0.02)
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_five_latent_frames_make_one_reflected_window():
    tokens = torch.arange(5).reshape(1, 1, 5, 1, 1).expand(1, 1, 5, 2, 3)
    (window,) = split_with_overlap(tokens, 8, 2)
    assert window[0, 0, :, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


def test_windows_that_cannot_be_padded_are_refused():
    with pytest.raises(BadInput, match="too few"):
        split_with_overlap(torch.zeros(1, 1, 2, 1, 1, dtype=torch.long), 8, 2)
    with pytest.raises(BadInput, match="too short"):
        split_with_overlap(torch.zeros(1, 1, 4, 1, 1, dtype=torch.long), 8, 2)


def test_blend_is_a_hard_cut_for_overlap_two():
    clips = [torch.full((1, 3, 9, 2, 2), float(i)) for i in range(3)]
    out = linear_blend(clips, 2)
    assert out.shape == (1, 3, 23, 2, 2) and out.dtype == torch.float32
    assert out[0, 0, :, 0, 0].tolist() == [0.0] * 8 + [1.0] * 7 + [2.0] * 8
    assert linear_blend(clips[:1], 2) is clips[0]


# ---- tiny checkpoints and the stage ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dd")
    write_tiny_diffusion_decoder(root, token_voc=TINY_VOC)
    return root


@pytest.fixture(scope="module")
def stage(tiny_root):
    stage = DiffusionDecoderStage(CheckpointLayout(tiny_root), dtype=torch.float32)
    stage.load(torch.device("cpu"))
    return stage


def _inputs(latent_frames: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY_VOC, (1, latent_frames, 4, 6), generator=g), torch.randn(
        1, 512, 48, generator=g
    )


def test_tiny_files_follow_the_release_layout(tiny_root):
    dd, cv = tiny_root / DIFFUSION_DECODER_DIR, tiny_root / CV_TOKENIZER_DIR
    state = torch.load(dd / "model.pt", weights_only=True)
    assert any(k.startswith("logvar.") for k in state)
    assert all(k.startswith(("net.", "logvar.")) for k in state)
    assert state["net.token_embedder.weight"].shape == (TINY_VOC, 8)
    aux = torch.load(dd / "aux_vars.pt", weights_only=True)
    assert aux["context"].shape == (1, 512, 48) and aux["context_mask"].all()
    assert DiTConfig.from_json(dd / ARCH_FILE).token_voc == TINY_VOC
    mean, std = torch.load(cv / "mean_std.pt", weights_only=True)
    assert mean.numel() % 16 == 0 and bool((std > 0).all())


def test_tiny_cv_tokenizer_has_the_real_interface(tiny_root):
    cv = tiny_root / CV_TOKENIZER_DIR
    encoder, decoder = (torch.jit.load(str(cv / name)) for name in ("encoder.jit", "decoder.jit"))
    video = torch.rand(1, 3, 33, 64, 96) * 2 - 1
    latent, (a, b) = encoder(video)
    assert latent.shape == (1, 16, 5, 8, 12) and a.shape == b.shape == (1,)
    restored = decoder(latent)
    assert restored.shape == video.shape
    flat = torch.zeros(1, 3, 33, 64, 96)
    flat[:, 0] = 0.5  # a flat colour survives the round trip
    assert torch.allclose(decoder(encoder(flat)[0]), flat, atol=1e-5)


def test_stage_decodes_the_tiny_video(stage):
    tokens, context = _inputs()
    calls = []
    video = stage.run(tokens, context, num_frames=33, on_progress=calls.append)
    assert video.shape == (1, 3, 33, 64, 96) and video.device.type == "cpu"
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0 and float(video.std()) > 0.01
    assert sum(calls) == stage.progress_total(tokens) == 16
    assert torch.equal(stage.run(tokens, context, num_frames=33), video)  # seeded: same video every run
    other = DiffusionDecoderStage(stage.layout, dtype=torch.float32, seed=2)
    other.load(torch.device("cpu"))
    assert not torch.equal(other.run(tokens, context, num_frames=33), video)


def test_stage_blends_two_windows(stage):
    tokens, context = _inputs(latent_frames=11)  # windows start at 0 and 6; the second is reflect-padded
    calls = []
    video = stage.run(tokens, context, num_frames=81, on_progress=calls.append)
    assert video.shape == (1, 3, 81, 64, 96) and video.dtype == torch.float32
    assert sum(calls) == 32


def test_stage_rejects_bad_inputs(stage):
    tokens, context = _inputs()
    with pytest.raises(BadInput, match="outside"):
        stage.run(tokens + TINY_VOC, context)
    with pytest.raises(BadInput, match="text embedding"):
        stage.run(tokens, torch.randn(1, 512, 32))
    with pytest.raises(BadInput, match="cannot produce 60 frames"):
        stage.run(tokens, context, num_frames=60)


def test_stage_contract_and_missing_files(tiny_root, tmp_path):
    stage = DiffusionDecoderStage(CheckpointLayout(tiny_root), dtype=torch.float32)
    assert not stage.loaded
    stage.load(torch.device("cpu"))
    assert len(stage.modules()) == 2 and stage.param_bytes() > 0
    stage.unload()
    assert not stage.loaded and stage.modules() == []
    with pytest.raises(ModelNotDownloaded, match="diffusion decoder not found"):
        DiffusionDecoderStage(CheckpointLayout(tmp_path), dtype=torch.float32).load(torch.device("cpu"))


def test_stage_refuses_a_checkpoint_of_another_size(tiny_root, tmp_path):
    for folder in (DIFFUSION_DECODER_DIR, CV_TOKENIZER_DIR):
        (tmp_path / folder).mkdir()
        for file in (tiny_root / folder).iterdir():
            (tmp_path / folder / file.name).write_bytes(file.read_bytes())
    arch = json.loads((tmp_path / DIFFUSION_DECODER_DIR / ARCH_FILE).read_text())
    arch.update(token_voc=64000)
    (tmp_path / DIFFUSION_DECODER_DIR / ARCH_FILE).write_text(json.dumps(arch))
    with pytest.raises(CheckpointMismatch, match="wrong shapes token_embedder.weight"):
        DiffusionDecoderStage(CheckpointLayout(tmp_path), dtype=torch.float32).load(torch.device("cpu"))
    (tmp_path / DIFFUSION_DECODER_DIR / "model.pt").write_bytes(b"truncated download")
    with pytest.raises(CheckpointMismatch, match="cannot read .*model.pt as a PyTorch checkpoint"):
        DiffusionDecoderStage(CheckpointLayout(tmp_path), dtype=torch.float32).load(torch.device("cpu"))


# ---- benchmark ---------------------------------------------------------------------------------------
def test_benchmark_reports_on_cpu(tmp_path):
    out = _script(
        "bench_dd.py",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--no-compile",
        "--out",
        str(tmp_path / "b.json"),
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["forwards_per_video"] == 32 and report["tokens_per_sample"] == 192
    assert report["eager"]["s_per_video"] > 0 and report["eager"]["s_per_video_is_extrapolated"]
    assert report["matmul_tflops"] > 0 and report["compiled"] is None
    assert "s/video" in out.stdout
