#!/usr/bin/env python3
"""Benchmark AR generation (prefill + decode) against the memory-bandwidth floor.

GPU (the numbers in docs/benchmarks.md):
    python scripts/bench_ar.py --preset 5b-video2world --batch-sizes 1,4,8 --out bench_ar.json
    python scripts/bench_ar.py --quantization bf16,int8,fp8 --eager-steps 0 --equality-steps 0 --out q.json

``--quantization``: each mode's model is built from the same random bf16 weights and kept resident, the rows
of one batch size run side by side, and each quantized model's logits are compared with bf16's over
``--accuracy-steps`` teacher-forced decode steps (relative L2 error, mean KL(bf16 || q), top-1 agreement).
Peak GiB is per row: the model's own weights plus what the row allocated (the other models are idle).
CPU smoke run (seconds):
    python scripts/bench_ar.py --preset tiny --device cpu --batch-sizes 1,2 --out /tmp/b.json

Weights are random at the preset's real shape (``--load-format dummy``); the context is random. The
decode step reads only the valid prefix of the cache, so later steps cost a little more: ``--decode-steps``
steps from the start are timed and the full continuation is extrapolated from them (a slight
underestimate; ``--full-b1`` or ``--decode-steps 0`` runs all of it).
The floor is the bytes one decode step must read (all weights but the embedding table and the
cross-attention K/V projections, plus the valid KV cache averaged over the continuation) divided by the
measured copy bandwidth; the issue's definition (all 9.17 GB of weights) is reported too.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch

from cosmos_cli.decode import base
from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import PRESETS, ModelArgs
from cosmos_cli.quant.accuracy import logit_errors, teacher_forced_logits
from cosmos_cli.quant.kernels import tuned_configs
from cosmos_cli.quant.linear import KERNEL_MODES, quantize_model


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read and written."""
    if device.type != "cuda":
        return float("nan")
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    return 2 * n * 10 / (time.perf_counter() - t0)


def bytes_per_step(args: ModelArgs, batch: int, prompt_len: int, num_new: int, elem: int = 2) -> dict[str, float]:
    """Bytes one decode step must read: weights once, plus the valid KV prefix of every sample."""
    all_weights = args.num_params() * elem
    embedding = args.embedding_rows * args.dim * elem
    cross_kv = sum(args.has_cross_attn(i) for i in range(args.n_layers)) * 2 * args.context_dim
    cross_kv *= args.n_kv_heads * args.head_dim * elem
    kv_per_token = 2 * args.n_layers * args.n_kv_heads * args.head_dim * elem
    mean_valid = prompt_len + num_new / 2
    return {
        "weights_all": all_weights,
        "weights_read": all_weights - embedding - cross_kv,
        "kv_mean": batch * kv_per_token * mean_valid,
        "kv_static": batch * kv_per_token * args.max_seq_len,
    }


def run_case(model, args, batch, prompt_len, num_new, decode_steps, compile, cuda_graph, params, device):
    gen = ARGenerator(model, compile=compile, cuda_graph=cuda_graph)
    prompt = torch.randint(0, args.video_vocab_size, (batch, prompt_len), device=device)
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    cross = args.cross_attn_every_k_layers
    context = torch.randn(batch, args.context_len, args.context_dim, device=device) if cross else None
    steps = num_new if decode_steps <= 0 else min(num_new, decode_steps + 1)
    if device.type == "cuda":
        model.free_caches()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    seeds = torch.arange(batch)
    tokens = gen.generate(prompt, steps, params, seeds, context=context)  # includes graph capture (warm-up)
    warmup = gen.stats.warmup_s
    tokens = gen.generate(prompt, steps, params, seeds, context=context)  # timed, warm
    st = gen.stats
    ms = st.ms_per_token
    peak = float("nan")
    if device.type == "cuda":  # this model's weights + what this row allocated (other resident models excluded)
        own = sum(p.numel() * p.element_size() for p in model.parameters())
        peak = (torch.cuda.max_memory_allocated(device) - before + own) / 2**30
    del gen
    model.free_caches()
    return {
        "batch": batch,
        "prefill_s": st.prefill_s,
        "decode_ms_per_step": ms,
        "decode_steps_timed": steps - 1,
        "total_decode_s": ms * (num_new - 1) / 1000,
        "tokens_per_s": batch * 1000 / ms,
        "peak_gib": peak,
        "warmup_s": warmup,
        "extrapolated": steps < num_new,
    }, tokens


BENCH_MODES = ("bf16", *KERNEL_MODES, "int8", "fp8")
"""``bf16``: cuBLAS for every call (the reference); ``bf16-gemv``: what ``generate`` runs for bf16 on a GPU
(one-row calls through the Triton kernel, ``prepare_linears``); ``bf16-triton``: every few-row call through
Triton; ``int8``, ``fp8``: the quantized models ``generate --quantization`` runs."""


def build(args, mode: str, dtype, device, seed: int = 0):
    """The preset with random weights (same seed: the same bf16 weights for every mode), fused, quantized."""
    torch.manual_seed(seed)
    model = build_model(args, weights=None, dtype=dtype, device=device)
    if device.type == "cuda":
        model.fuse_projections()  # as the pipeline's AR stage does on GPU
    return quantize_model(model, mode)


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def teacher_forced(model, args, prompt_len: int, steps: int, device):
    """Logits of the prefill's last position and ``steps - 1`` teacher-forced decode steps (eager, one token at
    a time, B=1) after a fixed random prompt, context and continuation: the same inputs for every model."""
    gen = torch.Generator(device="cpu").manual_seed(7)
    prompt = torch.randint(0, args.video_vocab_size, (1, prompt_len), generator=gen).to(device)
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    tokens = torch.randint(0, args.video_vocab_size, (1, steps - 1), generator=gen).to(device)
    ctx = None
    if args.context_dim and args.cross_attn_every_k_layers:
        ctx = torch.randn(1, args.context_len, args.context_dim, generator=gen)
        ctx = ctx.to(device, next(model.parameters()).dtype)
    logits = teacher_forced_logits(model, prompt, tokens, ctx)
    model.free_caches()
    return logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=[*PRESETS, "tiny"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--quantization", default="bf16", help="comma-separated BENCH_MODES: bf16,bf16-gemv,int8,fp8,...")
    p.add_argument("--num-input-frames", type=int, default=9, choices=[1, 9])
    p.add_argument("--decode-steps", type=int, default=1024, help="timed steps per case; 0 = the whole continuation")
    p.add_argument("--full-b1", action="store_true", help="run B=1 over the whole continuation")
    p.add_argument("--eager-steps", type=int, default=32, help="steps timed for the plain eager baseline (0: none)")
    p.add_argument("--equality-steps", type=int, default=256)
    p.add_argument("--accuracy-steps", type=int, default=256, help="teacher-forced steps vs bf16 (0: none)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--inductor-defaults", action="store_true", help="compile without base.COMPILE_OPTIONS")
    p.add_argument("--out", default="bench_ar.json")
    a = p.parse_args()
    if a.inductor_defaults:
        base.COMPILE_OPTIONS = {}

    device = torch.device(a.device)
    args = TINY_V2W if a.preset == "tiny" else PRESETS[a.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    latent_t = 1 if a.num_input_frames == 1 else 2
    prompt_len = latent_t * args.tokens_per_frame + int(args.has_bov)
    num_new = args.num_video_tokens - latent_t * args.tokens_per_frame
    modes = a.quantization.split(",")
    for mode in modes:
        if mode not in BENCH_MODES:
            raise SystemExit(f"unknown --quantization {mode!r}: one of {', '.join(BENCH_MODES)}")
        if mode not in ("bf16", "int8") and device.type != "cuda":
            raise SystemExit(f"--quantization {mode} needs a CUDA GPU here")
    models = {mode: build(args, mode, dtype, device) for mode in modes}  # all resident: rows of one batch together
    bw = copy_bandwidth(device)
    params = SamplingParams(temperature=1.0, top_p=args.default_top_p)
    fast = not a.no_compile and device.type == "cuda"
    torch._dynamo.config.recompile_limit = 64
    report = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "preset": args.name,
        "params": args.num_params(),
        "dtype": str(dtype),
        "prompt_len": prompt_len,
        "num_new": num_new,
        "copy_bandwidth_GBps": bw / 1e9,
        "compile": fast,
        "compile_options": base.COMPILE_OPTIONS,
        "quantization": modes,
        "weights_bytes": {m: model_bytes(models[m]) for m in modes},
        "fast": [],
        "eager": [],
        "accuracy": {},
    }

    def save() -> None:
        with open(a.out, "w") as f:
            json.dump(_finite(report), f, indent=2)

    accuracy_steps = min(a.accuracy_steps, num_new)  # the continuation's length bounds the positions
    if accuracy_steps:
        ref_mode = "bf16" if "bf16" in models else None
        ref_model = models.get("bf16") or build(args, "bf16", dtype, device)
        ref = teacher_forced(ref_model, args, prompt_len, accuracy_steps, device)
        if ref_mode is None:
            del ref_model
        for mode in modes:
            if mode == "bf16":
                continue
            try:
                q = teacher_forced(models[mode], args, prompt_len, accuracy_steps, device)
            except Exception as err:  # noqa: BLE001
                report.setdefault("errors", []).append(f"{mode} accuracy: {type(err).__name__}: {err}")
                print("ERROR", report["errors"][-1], flush=True)
                continue
            report["accuracy"][mode] = logit_errors(ref, q)
            print(mode, json.dumps(report["accuracy"][mode]), flush=True)
        del ref
        save()

    for batch in [int(b) for b in a.batch_sizes.split(",")]:
        steps = 0 if (batch == 1 and a.full_b1) else a.decode_steps
        need = bytes_per_step(args, batch, prompt_len, num_new)
        floor_bf16 = 1000 * (need["weights_read"] + need["kv_mean"]) / bw
        for mode in modes:
            model = models[mode]
            try:
                row, _ = run_case(model, args, batch, prompt_len, num_new, steps, fast, None, params, device)
            except Exception as err:  # noqa: BLE001 - one GPU call runs every mode: record and go on
                report.setdefault("errors", []).append(f"{mode} B={batch}: {type(err).__name__}: {err}")
                print("ERROR", report["errors"][-1], flush=True)
                save()
                continue
            own = report["weights_bytes"][mode]
            read_own = need["weights_read"] - (need["weights_all"] - own)  # weights read scale like the stored ones
            row["quantization"] = mode
            row["weights_gib"] = own / 2**30
            row["floor_ms"] = floor_bf16
            row["floor_ms_issue"] = 1000 * (need["weights_all"] + need["kv_mean"]) / bw
            row["floor_ms_own"] = 1000 * (read_own + need["kv_mean"]) / bw
            row["ratio_to_floor"] = row["decode_ms_per_step"] / row["floor_ms"]
            row["ratio_to_floor_issue"] = row["decode_ms_per_step"] / row["floor_ms_issue"]
            row["ratio_to_own_floor"] = row["decode_ms_per_step"] / row["floor_ms_own"]
            report["fast"].append(row)
            if a.eager_steps:
                eager, _ = run_case(model, args, batch, prompt_len, num_new, a.eager_steps, False, False, params,
                                    device)  # fmt: skip
                eager["quantization"] = mode
                eager["ratio_to_floor"] = eager["decode_ms_per_step"] / row["floor_ms"]
                report["eager"].append(eager)
            print(json.dumps({"fast": row}), flush=True)
            save()
    for mode in modes:
        b1 = [r for r in report["fast"] if r["batch"] == 1 and r["quantization"] == mode]
        bf = {r["batch"]: r for r in report["fast"] if r["quantization"] == "bf16"}
        for r in report["fast"]:
            if r["quantization"] != mode:
                continue
            if b1:
                r["speedup_tokens_per_s_vs_b1"] = r["tokens_per_s"] / b1[0]["tokens_per_s"]
            if r["batch"] in bf:
                r["ratio_to_bf16"] = r["decode_ms_per_step"] / bf[r["batch"]]["decode_ms_per_step"]

    if a.equality_steps and fast:
        model = models[modes[0]]
        n = min(a.equality_steps, num_new)
        greedy = SamplingParams(temperature=0.0)
        prompt = torch.randint(0, args.video_vocab_size, (1, prompt_len), device=device)
        cross = args.cross_attn_every_k_layers
        ctx = torch.randn(1, args.context_len, args.context_dim, device=device) if cross else None
        seeds = torch.zeros(1, dtype=torch.long)
        t_fast = ARGenerator(model, compile=True).generate(prompt, n, greedy, seeds, context=ctx)
        t_eager = ARGenerator(model, compile=False, cuda_graph=False).generate(prompt, n, greedy, seeds, context=ctx)
        same = (t_fast == t_eager)[0]
        first_diff = int((~same).nonzero()[0]) if not bool(same.all()) else None
        report["greedy_equality"] = {"steps": n, "equal": bool(same.all()), "first_divergence": first_diff}
    if device.type == "cuda":
        report["tuned_kernels"] = tuned_configs()
    save()
    print_table(report)


def _finite(value):
    """NaN (no GPU: no bandwidth, no peak memory) becomes null, so the file is standard JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def print_table(report: dict) -> None:
    print(
        f"\n{report['device']}  {report['preset']}  copy bw {report['copy_bandwidth_GBps']:.0f} GB/s  "
        f"prompt {report['prompt_len']} + {report['num_new']} tokens"
    )
    print(
        f"{'quant':<12}{'B':>3}{'weights GiB':>12}{'prefill s':>10}{'ms/step':>9}{'x bf16':>7}{'tok/s':>9}"
        f"{'bf16 floor':>11}{'ratio':>7}{'own floor':>10}{'peak GiB':>9}{'warmup s':>9}{'rel err':>9}{'KL':>9}"
    )
    acc = report.get("accuracy", {})
    rows = sorted(report["fast"], key=lambda r: (report["quantization"].index(r["quantization"]), r["batch"]))
    for r in rows:
        e = acc.get(r["quantization"], {})
        print(
            f"{r['quantization']:<12}{r['batch']:>3}{r['weights_gib']:>12.2f}{r['prefill_s']:>10.3f}"
            f"{r['decode_ms_per_step']:>9.3f}{r.get('ratio_to_bf16', float('nan')):>7.2f}{r['tokens_per_s']:>9.1f}"
            f"{r['floor_ms']:>11.2f}{r['ratio_to_floor']:>7.2f}{r['floor_ms_own']:>10.2f}{r['peak_gib']:>9.2f}"
            f"{r['warmup_s']:>9.1f}{e.get('rel_error', float('nan')):>9.4f}{e.get('mean_kl', float('nan')):>9.5f}"
        )
    for r in report.get("eager", []):
        print(f"eager {r['quantization']:<6} B={r['batch']}: {r['decode_ms_per_step']:.2f} ms/step")
    if "greedy_equality" in report:
        print("greedy fast vs eager:", report["greedy_equality"])
    for err in report.get("errors", []):
        print("ERROR", err)


if __name__ == "__main__":
    main()
