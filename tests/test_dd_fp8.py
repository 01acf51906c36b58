"""fp8 diffusion decoder on the CPU: the quantization itself (``torch._scaled_mm`` emulated by a dequantized
float32 matmul), the layers it replaces, and the stage flag."""

from __future__ import annotations

import pytest
import torch

fp8 = pytest.importorskip("cosmos_cli.models.diffusion_decoder.fp8")

try:
    torch.zeros(1).to(torch.float8_e4m3fn)
except (RuntimeError, TypeError, AttributeError):  # pragma: no cover - very old torch
    pytest.skip("this torch build cannot cast to float8 on the CPU", allow_module_level=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_rows_quantize_to_e4m3_with_one_scale_each():
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 5)[:, None]
    q, scale = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (5, 1)
    # Each row's largest magnitude lands on 448, whatever the row's range: per-row scaling.
    assert torch.allclose(q.float().abs().amax(-1), torch.full((5,), fp8.FP8_MAX))
    deq = q.float() * scale
    # e4m3 keeps 3 mantissa bits: each value within 1/16 of itself (normal range), so the row error is ~3%.
    err = (deq - x).abs()
    assert bool((err <= x.abs() / 16 + scale * 2**-9).all())
    assert 0.005 < _rel(deq, x) < 0.05


def test_fp8_linear_matches_the_float_product_to_fp8_precision():
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(128, 96, bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02, generator=g)
    layer = fp8.Fp8Linear(linear.weight, emulate=True)
    assert layer.weight_fp8.dtype == torch.float8_e4m3fn and layer.weight_fp8.element_size() == 1
    assert layer.weight_scale.shape == (1, 96)
    x = torch.randn(3, 7, 128, generator=g)
    out = layer(x)
    ref = linear(x)
    assert out.shape == ref.shape and out.dtype == x.dtype
    assert 0.005 < _rel(out, ref) < 0.06  # quantized (not a copy), yet close


def test_quantize_dit_replaces_the_token_stream_linears_only():
    from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_
    from cosmos_cli.stages.standin_files.sizes import tiny_dd_config

    config = tiny_dd_config(token_voc=64, context_dim=32)
    net = DiffusionDecoderDiT(config).eval()
    init_random_(net, torch.Generator().manual_seed(0))
    b, t, h, w = 2, 2, 8, 8
    g = torch.Generator().manual_seed(2)
    x = torch.randn(b, config.in_channels, t, h, w, generator=g)
    tokens = torch.randint(0, 64, (b, 1, t, h // 2, w // 2), generator=g)
    context = torch.randn(b, 16, 32, generator=g)
    timesteps = torch.tensor([0.3, -0.5])
    with torch.no_grad():
        ref = net(x, timesteps, context, tokens)
        count = fp8.quantize_dit_(net)
        out = net(x, timesteps, context, tokens)
    per_block = {"fa": 4, "ca": 2, "mlp": 2}
    assert count == config.num_blocks * sum(per_block[kind] for kind in config.block_types)
    sub = net.blocks["block0"].blocks
    ca = next(s for s in sub if s.block_type == "ca").block.attn
    assert isinstance(ca.to_q[0], fp8.Fp8Linear) and isinstance(ca.to_k[0], torch.nn.Linear)
    assert isinstance(net.final_layer.linear, torch.nn.Linear)  # the output projection stays exact
    assert isinstance(net.x_embedder.proj[1], torch.nn.Linear)
    assert 0 < _rel(out, ref) < 0.1


def test_stage_refuses_an_unknown_quantization(tiny_checkpoints):
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.errors import BadInput
    from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
    from tests.conftest import TINY_AR_DIR

    with pytest.raises(BadInput, match="quantization"):
        DiffusionDecoderStage(CheckpointLayout(tiny_checkpoints, TINY_AR_DIR), dtype=torch.float32, quantization="int3")


def test_fp8_stage_decodes_close_to_bf16_and_warm_up_runs(tiny_checkpoints):
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
    from tests.conftest import TINY_AR_DIR

    layout = CheckpointLayout(tiny_checkpoints, TINY_AR_DIR)
    videos = {}
    for mode in ("bf16", "fp8"):
        stage = DiffusionDecoderStage(layout, dtype=torch.float32, quantization=mode, num_steps=2)
        stage.load(torch.device("cpu"))
        cfg = stage._net.config
        g = torch.Generator().manual_seed(4)
        tokens = torch.randint(0, cfg.token_voc, (1, 5, 4, 6), generator=g)
        context = torch.randn(1, 8, cfg.crossattn_emb_channels, generator=g)
        stage.warm_up((5, 4, 6), 8)
        videos[mode] = stage.run(tokens, context, num_frames=9).float()
    mse = float(((videos["fp8"] - videos["bf16"]) ** 2).mean())
    assert mse > 0  # the fp8 path really ran
    psnr = 10 * torch.log10(torch.tensor(1.0 / mse))
    assert psnr > 30
