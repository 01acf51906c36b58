"""Benchmark the diffusion decoder's DiT sampling: seconds per video, TFLOP/s, peak memory, compile time.

Random (dummy) weights at the 7B shape (``--preset 7b``: 640x1024 -> latent 8x80x128, 20,480 tokens per
sample, cond + uncond as one batch of 2, 15 steps + the final clean step = 16 guided calls = 32 DiT
forwards per video), or the tiny tokenizer-pipeline shape on the CPU (``--preset tiny``). Times the DiT
sampling of one window only (the CV8x8x8 decode is a separate network).

Two runs of our own model in one process: a plain eager baseline (``--eager-calls`` guided calls after
one warm-up, extrapolated to a full video, so it stays cheap on the GPU), then the same weights with every
transformer block compiled (``torch.compile`` per block) running the full sampler. Also measures the bf16
matmul rate on the model's own largest GEMM and each available SDPA backend at the model's attention
shape, so the achieved rate can be read as a fraction of what the card does.

    python scripts/bench_dd.py --preset 7b --out bench_dd.json           # H100 / H200
    python scripts/bench_dd.py --preset tiny --device cpu --out tiny.json  # seconds, CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from cosmos_cli.models.diffusion_decoder.blocks import SDPA_BACKENDS, sdpa_backends
from cosmos_cli.models.diffusion_decoder.config import DD_7B, DiTConfig
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, compile_blocks, init_random_
from cosmos_cli.models.diffusion_decoder.sampler import (
    GuidedDenoiser,
    SamplerSettings,
    sample,
    sigma_schedule,
)

PRESETS = {
    # config, latent (T, H, W), context length
    "7b": (DD_7B, (8, 80, 128), 512),
    "tiny": (
        DiTConfig(
            name="cosmos-dd-tiny",
            model_channels=64,
            num_blocks=2,
            num_heads=2,
            adaln_lora_dim=16,
            crossattn_emb_channels=48,
            token_voc=1600,
            token_dim=8,
        ),
        (8, 8, 12),
        512,
    ),
}
GIB = 2**30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Mean seconds of ``fn`` over ``repeat`` calls, device-synchronised."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def matmul_tflops(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeat: int) -> float:
    """Rate of one ``[m, k] @ [k, n]`` GEMM: the ceiling for the model's linear layers."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    torch.matmul(a, b)
    seconds = timed(lambda: torch.matmul(a, b), device, repeat)
    return 2 * m * k * n / seconds / 1e12


def sdpa_context(name: str) -> contextlib.AbstractContextManager:
    """One SDPA backend only (``auto``: PyTorch's own choice)."""
    return sdpa_backends(None if name == "auto" else [name])


def attention_probe(shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device, repeat: int) -> dict:
    """TFLOP/s of self-attention at the model's shape for each SDPA backend that runs here."""
    b, heads, n, d = shape
    q, k, v = (torch.randn(b, heads, n, d, dtype=dtype, device=device) for _ in range(3))
    flops = 4 * b * heads * n * n * d
    results, reference = {}, None
    names = ["flash", "cudnn", "efficient"] if device.type == "cuda" else ["math"]
    for name in names:
        try:
            with sdpa_context(name):
                out = F.scaled_dot_product_attention(q, k, v)
                seconds = timed(lambda: F.scaled_dot_product_attention(q, k, v), device, repeat)
        except RuntimeError as err:  # backend not available for this card / build
            results[name] = {"error": str(err).splitlines()[0][:120]}
            continue
        reference = out if reference is None else reference
        results[name] = {
            "tflops": flops / seconds / 1e12,
            "max_abs_diff_vs_first": (out.float() - reference.float()).abs().max().item(),
        }
    return results


def build_net(config: DiTConfig, dtype: torch.dtype, device: torch.device) -> DiffusionDecoderDiT:
    """Random weights allocated directly in ``dtype`` on ``device`` (buffers cast too, as NVIDIA does)."""
    with torch.device("meta"):
        net = DiffusionDecoderDiT(config)
    net = net.to(dtype=dtype).to_empty(device=device).eval().requires_grad_(False)
    generator = torch.Generator(device=device).manual_seed(0)
    init_random_(net, generator)
    return net


def make_denoiser(net: DiffusionDecoderDiT, latent: tuple[int, int, int], context_len: int, dtype, device):
    config = net.config
    t, h, w = latent
    generator = torch.Generator(device=device).manual_seed(1)
    tokens = torch.randint(0, config.token_voc, (1, 1, t, h // 2, w // 2), device=device, generator=generator)
    context = torch.randn(1, context_len, config.crossattn_emb_channels, device=device, generator=generator)
    settings = SamplerSettings()
    denoiser = GuidedDenoiser(
        net,
        tokens.to(torch.int32),
        context.to(dtype),
        guidance=settings.guidance,
        sigma_data=settings.sigma_data,
    )
    noise = torch.randn(1, config.in_channels, t, h, w, device=device, generator=generator).to(dtype)
    return denoiser, noise * settings.sigma_max, settings


def run(args: argparse.Namespace) -> dict:
    config, latent, context_len = PRESETS[args.preset]
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    compile_ = args.compile if args.compile is not None else device.type == "cuda"
    t, h, w = latent
    tokens = config.num_tokens(t, h, w)
    flops_call = config.forward_flops(t, h, w, context_len, batch=2)
    settings = SamplerSettings()
    flops_video = flops_call * settings.x0_calls
    repeat = 3 if device.type == "cuda" else 1

    report: dict = {
        "preset": args.preset,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "latent_thw": list(latent),
        "tokens_per_sample": tokens,
        "context_len": context_len,
        "num_steps": settings.num_steps,
        "guided_calls_per_video": settings.x0_calls,
        "forwards_per_video": 2 * settings.x0_calls,
        "params": config.num_params(),
        "flops_per_forward": flops_call / 2,
        "flops_per_video": flops_video,
    }
    d, hidden = config.model_channels, config.mlp_hidden
    report["matmul_tflops"] = matmul_tflops(2 * tokens, d, hidden, dtype, device, repeat)
    report["attention_probe"] = attention_probe((2, config.num_heads, tokens, config.head_dim), dtype, device, repeat)
    backend = args.sdpa_backend
    if backend == "best":
        rates = {k: v["tflops"] for k, v in report["attention_probe"].items() if "tflops" in v}
        backend = max(rates, key=rates.get) if device.type == "cuda" and rates else "auto"
    report["sdpa_backend"] = backend

    with torch.no_grad(), sdpa_context(backend):
        reset_peak(device)
        net = build_net(config, dtype, device)
        weights = sum(p.numel() * p.element_size() for p in net.parameters()) / GIB
        report["weights_gib"] = weights
        denoiser, x_max, settings = make_denoiser(net, latent, context_len, dtype, device)
        sigmas = sigma_schedule(settings.num_steps, settings.sigma_min, settings.sigma_max, settings.rho)
        sigma = torch.full((1,), 80.0, dtype=dtype, device=device)

        # Eager baseline: a couple of guided calls, extrapolated to the 16 calls of one video.
        denoiser(x_max, sigma)
        reset_peak(device)
        per_call = timed(lambda: denoiser(x_max, sigma), device, args.eager_calls)
        report["eager"] = {
            "guided_calls_timed": args.eager_calls,
            "s_per_guided_call": per_call,
            "s_per_video": per_call * settings.x0_calls,
            "s_per_video_is_extrapolated": True,
            "tflops": flops_call / per_call / 1e12,
            "peak_gib": peak_gib(device),
        }

        if compile_:
            compile_blocks(net)
            reset_peak(device)
            first = timed(lambda: denoiser(x_max, sigma), device)
            steady = timed(lambda: denoiser(x_max, sigma), device, repeat)
            reset_peak(device)
            seconds = timed(lambda: sample(denoiser, x_max, sigmas), device)
            peak = peak_gib(device)
            report["compiled"] = {
                "compile_s": max(first - steady, 0.0),
                "s_per_guided_call": steady,
                "s_per_video": seconds,
                "s_per_video_is_extrapolated": False,
                "tflops": flops_video / seconds / 1e12,
                "pct_of_matmul": 100 * flops_video / seconds / 1e12 / report["matmul_tflops"],
                "peak_gib": peak,
                "peak_minus_weights_gib": None if peak is None else peak - weights,
                "speedup_vs_eager": report["eager"]["s_per_video"] / seconds,
            }
        else:
            report["compiled"] = None
    return report


def print_table(report: dict) -> None:
    def fmt(value, spec=".2f"):
        return "-" if value is None else format(value, spec)

    print(
        f"diffusion decoder DiT, preset {report['preset']} on {report['device_name']} ({report['dtype']}, "
        f"torch {report['torch']}): {report['tokens_per_sample']} tokens/sample, "
        f"{report['forwards_per_video']} forwards/video = {report['flops_per_video'] / 1e15:.2f} PFLOP"
    )
    print(
        f"matmul rate (model's largest GEMM): {report['matmul_tflops']:.0f} TFLOP/s; "
        f"SDPA backend: {report['sdpa_backend']}"
    )
    for name, probe in report["attention_probe"].items():
        rate = f"{probe['tflops']:.0f} TFLOP/s" if "tflops" in probe else probe["error"]
        print(f"  attention {name:9s} {rate}")
    rows = [
        (
            "eager (extrapolated from " + str(report["eager"]["guided_calls_timed"]) + " calls)",
            report["eager"],
        )
    ]
    if report["compiled"]:
        rows.append(("compiled per block (full sampler)", report["compiled"]))
    print(f"{'run':42s} {'s/video':>9s} {'TFLOP/s':>8s} {'%matmul':>8s} {'peak GiB':>9s} {'compile s':>10s}")
    for label, row in rows:
        pct = 100 * row["tflops"] / report["matmul_tflops"]
        print(
            f"{label:42s} {row['s_per_video']:9.2f} {row['tflops']:8.1f} {pct:8.1f} "
            f"{fmt(row['peak_gib']):>9s} {fmt(row.get('compile_s'), '.1f'):>10s}"
        )
    print(f"weights: {report['weights_gib']:.2f} GiB")
    compiled = report["compiled"]
    if compiled:
        over = compiled["peak_minus_weights_gib"]
        print(
            f"compiled: {compiled['pct_of_matmul']:.0f}% of the matmul rate (target >= 60), "
            f"peak - weights = {fmt(over)} GiB (target <= 4), {compiled['speedup_vs_eager']:.2f}x vs eager"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the blocks (default: on the GPU only)",
    )
    parser.add_argument("--eager-calls", type=int, default=2, help="guided calls timed for the eager baseline")
    parser.add_argument(
        "--sdpa-backend",
        choices=["best", "auto", *SDPA_BACKENDS],
        default="best",
        help="best: the fastest backend of the attention probe",
    )
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    report = run(args)
    print_table(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
