"""Weight-only int8/fp8 quantization (``--quantization``): the CPU reference path, golden-set accuracy,
SCD exactness on the quantized model, sizes for the plan, and flag validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.decode.speculative import SpeculativeGenerator
from cosmos_cli.errors import BadInput
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import PRESETS, ModelArgs
from cosmos_cli.quant.accuracy import golden_errors, logit_errors
from cosmos_cli.quant.kernels import reference_linear
from cosmos_cli.quant.linear import (
    QuantLinear,
    check_quantization,
    dequantize,
    prepare_linears,
    quantize_model,
    quantize_weight,
)
from cosmos_cli.quant.sizes import ar_weight_bytes
from tests.conftest import shared_path

MODES = ("int8", "fp8")


@pytest.mark.parametrize("mode", MODES)
def test_quantized_linear_equals_dequantize_then_linear(mode):
    gen = torch.Generator().manual_seed(1)
    linear = nn.Linear(96, 40, bias=False)
    linear.weight.data = torch.randn(40, 96, generator=gen) * torch.rand(40, 1, generator=gen)  # rows of any scale
    x = torch.randn(3, 5, 96, generator=gen)
    q = QuantLinear.from_linear(linear, mode)
    assert q.weight.dtype == {"int8": torch.int8, "fp8": torch.float8_e4m3fn}[mode] and q.scale.dtype == torch.float32
    out = q(x)
    ref = F.linear(x, dequantize(q.weight, q.scale))
    # (x @ q.T) * s and x @ (q * s).T differ only by float32 rounding.
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    assert torch.equal(out, reference_linear(x, q.weight, q.scale))


def test_quantizer_error_is_within_half_a_step():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    q, s = quantize_weight(w, "int8")
    assert int(q.abs().max()) == 127  # each row's largest weight maps to the full range
    assert bool(((dequantize(q, s) - w).abs() <= s[:, None] / 2 + 1e-7).all())
    q8, s8 = quantize_weight(w, "fp8")
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normal numbers (absolute below the subnormal step).
    err = (dequantize(q8, s8) - w).abs()
    assert bool((err <= w.abs() * 2**-4 + s8[:, None] * 2**-9 + 1e-7).all())


def test_quantize_model_replaces_every_linear_and_sizes_agree():
    model = build_model(TINY_V2W, weights=None, dtype=torch.float32, device=torch.device("cpu"))
    quantize_model(model, "int8")
    assert not [m for m in model.modules() if type(m) is nn.Linear]
    assert isinstance(model.output, QuantLinear) and isinstance(model.layers[0].feed_forward.w2, QuantLinear)
    assert model.tok_embeddings.weight.dtype == torch.float32  # the embedding is not a linear: kept
    stored = sum(p.numel() * p.element_size() for p in model.parameters())
    assert stored == ar_weight_bytes(TINY_V2W, "int8", elem=4)
    full = ar_weight_bytes(PRESETS["5b-video2world"], "bf16")
    small = ar_weight_bytes(PRESETS["5b-video2world"], "int8")
    assert full == PRESETS["5b-video2world"].num_params() * 2
    assert 0.5 < small / full < 0.55  # linears halve; the bf16 embedding table (0.5 GB) stays


def test_bf16_decode_linears_share_the_weights_and_compute_the_same_function():
    """bf16 on a GPU wraps each linear for the one-row kernel; on CPU (the golden checks) nothing changes."""
    model = build_model(TINY_V2W, weights=None, dtype=torch.float32, device=torch.device("cpu"))
    assert prepare_linears(model, "bf16", torch.device("cpu")) is model
    assert [m for m in model.modules() if type(m) is nn.Linear] and not getattr(model, "quantization", None)
    before = {name: p.data_ptr() for name, p in model.named_parameters()}
    quantize_model(model, "bf16-gemv")  # what prepare_linears does on CUDA
    assert not [m for m in model.modules() if type(m) is nn.Linear]
    after = {name: p.data_ptr() for name, p in model.named_parameters()}
    assert after == before  # same names, same storage: no copy
    layer = model.layers[0].feed_forward.w2
    x = torch.randn(1, layer.in_features)
    assert torch.equal(layer(x), F.linear(x, layer.weight))  # off the GPU: the plain linear, bit for bit


def test_the_kernels_int8_to_float_bit_trick_is_exact_for_every_byte():
    """The one-row kernel converts int8 weights as (int32(w) + bits of 1.5 * 2^23) read as float32, minus
    1.5 * 2^23 (``kernels._gemv_kernel``, INT8_BITS): the same arithmetic in torch, for all 256 values."""
    w = torch.arange(-128, 128, dtype=torch.int32)
    converted = (w + 0x4B400000).view(torch.float32) - 12582912.0
    assert torch.equal(converted, w.to(torch.float32))


def test_offload_plan_counts_the_smaller_weights():
    from cosmos_cli.offload.plan import PipelineShape, ar_size

    args = PRESETS["5b-video2world"]
    bf16, int8 = (ar_size(PipelineShape(args=args, ar_quantization=m)) for m in ("bf16", "int8"))
    assert bf16.weights - int8.weights > 4 * 10**9 and bf16.work == int8.work


def _golden_folders():
    return sorted(p.parent for p in shared_path("golden").glob("*/config.json"))


# Bounds: per-output-channel int8 rounds each weight by at most half a step, s/2 with s = max|row|/127; for
# Gaussian-like rows (max/rms ~ 3 at these widths) the rms weight error is 3/(127*sqrt(12)) ~ 0.7% of the
# row's rms, and a logit, a sum of many such products, carries about the same relative error (measured
# 0.43-0.53%). fp8 e4m3 keeps 3 mantissa bits: uniform relative error within +-2^-4, rms 2^-4/sqrt(3) ~ 3.6%
# (measured 2.8-3.3%). The bounds are twice the per-weight estimate; a wrong scale axis or a missing scale
# gives errors of order 1.
BOUNDS = {"int8": {"rel_error": 0.015, "mean_kl": 1e-4}, "fp8": {"rel_error": 0.075, "mean_kl": 2e-3}}


@pytest.mark.parametrize("mode", MODES)
def test_golden_logit_errors_are_bounded(mode):
    for folder in _golden_folders():
        errors = golden_errors(folder, mode)
        for part in ("prefill", "decode"):
            e = errors[part]
            assert e["rel_error_max"] < BOUNDS[mode]["rel_error"], (folder.name, part, e)
            assert e["mean_kl"] < BOUNDS[mode]["mean_kl"], (folder.name, part, e)
            assert e["rel_error"] > 1e-4, "quantization changed nothing: is the model really quantized?"


def test_logit_errors_measure_what_they_say():
    ref = torch.randn(4, 100)
    same = logit_errors(ref, ref.clone())
    assert same["rel_error"] == 0 and same["mean_kl"] == 0 and same["top1_agree"] == 1
    shifted = logit_errors(ref, ref + 3.0)  # a constant shift leaves the distribution unchanged
    assert shifted["mean_kl"] < 1e-12 and shifted["rel_error"] > 0.5
    assert math.isclose(logit_errors(ref, 1.1 * ref)["rel_error"], 0.1, rel_tol=1e-6)  # 1.1 in float32


@pytest.mark.parametrize("mode", MODES)
def test_greedy_scd_on_the_quantized_model_equals_its_greedy_sequential(mode):
    folder = _golden_folders()[0]
    args = ModelArgs.from_json(folder / "config.json")
    case = torch.load(folder / "case.pt", weights_only=False)
    model = build_model(args, weights=folder / "model.pt", dtype=torch.float32, device=torch.device("cpu"))
    quantize_model(model, mode)
    greedy = SamplingParams(temperature=0.0)
    prompt, context = case["prompt_tokens"], case.get("context")
    n, seeds = case["greedy_tokens"].shape[1], torch.zeros(1, dtype=torch.long)
    sequential = ARGenerator(model).generate(prompt, n, greedy, seeds, context=context)
    for window in (8, 128):
        scd = SpeculativeGenerator(model, window=window, draft="prev-frame").generate(
            prompt, n, greedy, seeds, context=context
        )
        assert torch.equal(scd, sequential), window


def test_check_quantization_messages():
    check_quantization("bf16", "cpu")
    check_quantization("int8", "cpu")  # the torch reference path runs anywhere
    with pytest.raises(BadInput, match="unknown --quantization 'int4'"):
        check_quantization("int4", "cpu")
    with pytest.raises(BadInput, match="fp8 needs a CUDA GPU"):
        check_quantization("fp8", "cpu")
    check_quantization("fp8", "cpu", name_only=True)  # offload-profile --plan for another card


def _generate_args(tmp_path, *extra):
    from tests.conftest import TINY_AR_DIR

    clip = shared_path("data", "clips", "input.mp4")
    return ["generate", "--checkpoint-dir", str(tmp_path / "ck"), "--ar-model-dir", TINY_AR_DIR, "--input",
            str(clip), "--prompt", "road", "--output-dir", str(tmp_path / "out"), "--device", "cpu",
            *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--quantization", "fp8"), "--quantization fp8 needs a CUDA GPU"),
        (("--quantization", "int4"), "--quantization must be bf16, int8 or fp8, got 'int4'"),
        (("--decoding", "scd", "--scd-window", "129"), "--scd-window must be between 1 and 128"),
    ],
)
def test_generate_rejects_bad_quantization_and_window_in_one_line(tiny_checkpoints, tmp_path, capsys, extra, message):
    from cosmos_cli.cli import main

    argv = _generate_args(tmp_path, *extra)
    argv[argv.index("--checkpoint-dir") + 1] = str(tiny_checkpoints)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mp4"))


def test_generate_int8_records_the_quantization(tiny_checkpoints, tmp_path):
    import json

    from cosmos_cli.cli import main

    argv = _generate_args(tmp_path, "--quantization", "int8", "--disable-diffusion-decoder", "--seed", "2",
                          "--video-save-name", "q")  # fmt: skip
    argv[argv.index("--checkpoint-dir") + 1] = str(tiny_checkpoints)
    assert main(argv) == 0
    records = list((tmp_path / "out").rglob("generation.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["quantization"] == "int8" and record["config"]["quantization"] == "int8"
