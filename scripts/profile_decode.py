#!/usr/bin/env python3
"""Where a compiled decode step's time goes, and why greedy fast and eager tokens part (issue: fast decode).

GPU (about 4 minutes on one H100; the numbers in docs/benchmarks.md):
    python scripts/profile_decode.py --out profile_decode.json
CPU smoke run (seconds):
    python scripts/profile_decode.py --preset tiny --device cpu --sections kernels,greedy --steps 4 --out /tmp/p.json

Sections:

``kernels``: the decode step as shipped (compiled, one CUDA graph) is timed; then the same compiled step is run
without the graph under ``torch.profiler`` and every GPU kernel is put in a class (weight GEMV, attention,
top-p sort, other small kernels). The step's time minus the kernels' busy time is launch and tail overhead;
the GEMVs' bytes over their kernel time is their achieved bandwidth, against the measured copy bandwidth.

``greedy``: eager (no compile, no graph) and fast greedy decoding from the same prompt. Reports the first step
where the tokens differ, the eager logits' top-1 minus top-2 gap at that step and over all steps, and the
fast-vs-eager logit difference at the first step (same input): when the gap at the split is below that
noise, bf16 rounding order explains the split.

``variants``: the graph-captured step recompiled under inductor options (``--variants``, see VARIANTS), timed.

Weights are random at the preset's shape (``--load-format dummy``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import date
from unittest import mock

import torch

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import PRESETS
from cosmos_cli.quant.linear import prepare_linears

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from bench_ar import bytes_per_step, copy_bandwidth  # noqa: E402  (a sibling script)

KERNEL_CLASSES = (
    ("attention", re.compile(r"split_kv|combine_kernel|fmha|flash|cudnn|sdpa|attention", re.I)),
    ("gemv/gemm", re.compile(r"gemv|gemm|wq_mm|splitk|nvjet|cutlass|sm90_xmma|ampere_|cublas", re.I)),
    ("top-p sort", re.compile(r"sort|radix|scan|cub::", re.I)),
)


def kernel_class(name: str) -> str:
    for label, pattern in KERNEL_CLASSES:
        if pattern.search(name):
            return label
    return "other (norms, RoPE, cache writes, residuals, sampling)"


def setup(args, device, dtype, batch: int = 1):
    latent_t = 2
    prompt_len = latent_t * args.tokens_per_frame + int(args.has_bov)
    prompt = torch.randint(0, args.video_vocab_size, (batch, prompt_len), device=device)
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    gen = torch.Generator(device="cpu").manual_seed(1)
    context = None
    if args.cross_attn_every_k_layers:
        context = torch.randn(batch, args.context_len, args.context_dim, generator=gen).to(device)
    return prompt, context


def timed_steps(gen: ARGenerator, params: SamplingParams, steps: int) -> float:
    """ms per replayed step from just after the prompt (the generator's ``out`` must hold ``steps + 1`` more)."""
    step = gen._replay_fn(params)
    tok, pos, out = gen.cur_tok.clone(), gen.cur_pos.clone(), gen.out.clone()
    gen.cur_pos.fill_(gen.prompt_len)
    step()
    _sync(gen.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(gen.device)
    ms = 1000 * (time.perf_counter() - t0) / steps
    gen.cur_tok.copy_(tok)
    gen.cur_pos.copy_(pos)
    gen.out.copy_(out)
    return ms


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section_kernels(model, args, device, params, steps: int) -> dict:
    prompt, context = setup(args, device, next(model.parameters()).dtype)
    fast = ARGenerator(model, compile=device.type == "cuda")
    fast.generate(prompt, steps + 8, params, torch.zeros(1, dtype=torch.long), context=context)
    graph_ms = timed_steps(fast, params, steps)

    fast.cuda_graph = False  # the same compiled step, launched kernel by kernel
    no_graph_ms = timed_steps(fast, params, steps)

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    step = fast._replay_fn(params)
    fast.cur_pos.fill_(fast.prompt_len)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    per_class: dict[str, dict] = {}
    kernels: dict[str, dict] = {}
    for event in prof.events():
        if device.type == "cuda" and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if device.type != "cuda" and not event.name.startswith("aten::"):
            continue
        us = (event.device_time if device.type == "cuda" else event.cpu_time) / steps
        label = kernel_class(event.name)
        slot = per_class.setdefault(label, {"us_per_step": 0.0, "kernels_per_step": 0.0})
        slot["us_per_step"] += us
        slot["kernels_per_step"] += 1 / steps
        k = kernels.setdefault(event.name[:120], {"class": label, "us_per_step": 0.0, "calls_per_step": 0.0})
        k["us_per_step"] += us
        k["calls_per_step"] += 1 / steps
    busy_us = sum(c["us_per_step"] for c in per_class.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1]["us_per_step"])[:25]
    return {
        "graph_ms_per_step": graph_ms,
        "no_graph_ms_per_step": no_graph_ms,
        "kernel_busy_ms_per_step": busy_us / 1000,
        "overhead_ms_per_step": graph_ms - busy_us / 1000,
        "kernels_per_step": sum(c["kernels_per_step"] for c in per_class.values()),
        "classes": per_class,
        "top_kernels": dict(top),
        "position": int(fast.prompt_len),
    }


def gemv_bandwidth(report: dict, weights_read_bytes: float) -> float:
    gemv = report["classes"].get("gemv/gemm")
    return weights_read_bytes / (gemv["us_per_step"] * 1e-6) if gemv else float("nan")


def section_greedy(model, args, device, steps: int) -> dict:
    """Eager vs fast greedy tokens, and the logit gaps and rounding noise that decide them."""
    dtype = next(model.parameters()).dtype
    prompt, context = setup(args, device, dtype)
    greedy = SamplingParams(temperature=0.0)
    runs = {}
    for name, fast in (("eager", False), ("fast", device.type == "cuda")):
        gen = ARGenerator(model, compile=fast, cuda_graph=fast)
        runs[name] = gen.generate(prompt, steps, greedy, torch.zeros(1, dtype=torch.long), context=context)[0]
    differ = (runs["eager"] != runs["fast"]).nonzero()
    first = int(differ[0]) if len(differ) else None

    # Logits along the eager path two ways: teacher-forced (one causal prefill) and step by step (decode
    # kernels). Both are bf16 with different reduction orders; their difference is the rounding noise.
    prompt_len = prompt.shape[1]
    tokens = runs["eager"]
    model.setup_caches(1, dtype, device)
    if context is not None:
        model.set_context(context.to(device, dtype))
    with torch.no_grad():
        seq = torch.cat([prompt[0], tokens[:-1]])[None]
        forced = model(seq, torch.arange(seq.shape[1], device=device), prefill=True)[0, prompt_len - 1 :].float()
        stepped = [model(prompt, torch.arange(prompt_len, device=device), prefill=True, last_only=True)[0, -1]]
        check = min(steps - 1, (first or 16) + 1)
        for i in range(check):
            pos = torch.tensor([prompt_len + i], device=device)
            stepped.append(model(tokens[i].view(1, 1), pos)[0, -1])
    noise = max((s.float() - forced[i]).abs().max().item() for i, s in enumerate(stepped))
    top2 = forced.topk(2, dim=-1).values
    gaps = (top2[:, 0] - top2[:, 1]).cpu()
    return {
        "steps": steps,
        "first_difference": first,
        "equal_steps": first if first is not None else steps,
        "gap_at_difference": float(gaps[first]) if first is not None else None,
        "gap_median": float(gaps.median()),
        "gap_min": float(gaps.min()),
        "steps_with_gap_below_noise": int((gaps < noise).sum()),
        "logit_std": float(forced.std()),
        "rounding_noise_max_abs": noise,
    }


VARIANTS: dict[str, dict] = {
    "default": {},
    "coordinate_descent_tuning": {"coordinate_descent_tuning": True},
    "persistent_reductions": {"triton.multi_kernel": 2},
    "cooperative_reductions": {"triton.cooperative_reductions": True},
    "persistent+cooperative": {"triton.multi_kernel": 2, "triton.cooperative_reductions": True},
    "persistent+cooperative+cdt": {
        "triton.multi_kernel": 2,
        "triton.cooperative_reductions": True,
        "coordinate_descent_tuning": True,
    },
}
"""Inductor option sets the ``variants`` section can time (``--variants``; ``default`` is inductor's own defaults,
not the shipped ``base.COMPILE_OPTIONS``): the decode step's own kernels
(norms, residuals, sampling) are inductor's, so its reduction strategy is the lever on them. A 4096-wide
RMSNorm over one row is a looped reduction by default; ``multi_kernel = 2`` forces the one-pass form;
cooperative reductions spread the 64000-wide softmax and sampling argmax of one row over several programs."""


def section_variants(model, args, device, params, steps: int, names: list[str]) -> dict:
    from cosmos_cli.decode import base

    prompt, context = setup(args, device, next(model.parameters()).dtype)
    results = {}
    for name in names:
        torch._dynamo.reset()
        try:
            with mock.patch.object(base, "COMPILE_OPTIONS", VARIANTS[name]):
                gen = ARGenerator(model, compile=True)
                t0 = time.perf_counter()
                gen.generate(prompt, steps + 8, params, torch.zeros(1, dtype=torch.long), context=context)
                compile_s = time.perf_counter() - t0
                results[name] = {"ms_per_step": timed_steps(gen, params, steps), "compile_s": compile_s}
            gen.release_graphs()
        except Exception as error:  # noqa: BLE001 - an option this torch lacks is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
        print(name, results[name], flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=[*PRESETS, "tiny"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sections", default="kernels,greedy,variants")
    p.add_argument("--steps", type=int, default=64, help="timed / profiled steps")
    p.add_argument("--greedy-steps", type=int, default=256)
    p.add_argument("--variants", default="default,coordinate_descent_tuning", help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--quantization", default="bf16", help="the linears as generate prepares them (prepare_linears)")
    p.add_argument("--out", default="profile_decode.json")
    a = p.parse_args()

    device = torch.device(a.device)
    args = TINY_V2W if a.preset == "tiny" else PRESETS[a.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    model = build_model(args, weights=None, dtype=dtype, device=device)
    if device.type == "cuda":
        model.fuse_projections()
    model = prepare_linears(model, a.quantization, device)
    params = SamplingParams(1.0, 0.7)
    report: dict = {"date": date.today().isoformat(), "preset": a.preset, "device": str(device),
                    "quantization": a.quantization}  # fmt: skip
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["copy_bandwidth"] = copy_bandwidth(device)
    sections = a.sections.split(",")
    if "kernels" in sections:
        report["kernels"] = section_kernels(model, args, device, params, a.steps)
        if device.type == "cuda":
            read = bytes_per_step(args, 1, 5121, 0)["weights_read"]
            report["kernels"]["gemv_bytes_per_s"] = gemv_bandwidth(report["kernels"], read)
            kernels = report["kernels"]
            kernels["gemv_fraction_of_copy"] = kernels["gemv_bytes_per_s"] / report["copy_bandwidth"]
        print(json.dumps(report["kernels"], indent=1), flush=True)
    if "greedy" in sections:
        report["greedy"] = section_greedy(model, args, device, a.greedy_steps)
        print(json.dumps(report["greedy"], indent=1), flush=True)
    if "variants" in sections and device.type == "cuda":
        report["variants"] = section_variants(model, args, device, params, a.steps * 4, a.variants.split(","))
        print(json.dumps(report["variants"], indent=1), flush=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
