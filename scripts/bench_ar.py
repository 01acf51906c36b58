#!/usr/bin/env python3
"""Benchmark AR generation (prefill + decode) against the memory-bandwidth floor.

GPU (the numbers in docs/benchmarks.md):
    python scripts/bench_ar.py --preset 5b-video2world --batch-sizes 1,4,8 --out bench_ar.json
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

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import PRESETS, ModelArgs


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
        torch.cuda.reset_peak_memory_stats(device)
    seeds = torch.arange(batch)
    tokens = gen.generate(prompt, steps, params, seeds, context=context)  # includes graph capture (warm-up)
    warmup = gen.stats.warmup_s
    tokens = gen.generate(prompt, steps, params, seeds, context=context)  # timed, warm
    st = gen.stats
    ms = st.ms_per_token
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=[*PRESETS, "tiny"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--num-input-frames", type=int, default=9, choices=[1, 9])
    p.add_argument("--decode-steps", type=int, default=1024, help="timed steps per case; 0 = the whole continuation")
    p.add_argument("--full-b1", action="store_true", help="run B=1 over the whole continuation")
    p.add_argument("--eager-steps", type=int, default=32, help="steps timed for the plain eager baseline")
    p.add_argument("--equality-steps", type=int, default=256)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="bench_ar.json")
    a = p.parse_args()

    device = torch.device(a.device)
    args = TINY_V2W if a.preset == "tiny" else PRESETS[a.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    latent_t = 1 if a.num_input_frames == 1 else 2
    prompt_len = latent_t * args.tokens_per_frame + int(args.has_bov)
    num_new = args.num_video_tokens - latent_t * args.tokens_per_frame
    torch.manual_seed(0)
    model = build_model(args, weights=None, dtype=dtype, device=device)
    if device.type == "cuda":
        model.fuse_projections()  # as the pipeline's AR stage does on GPU
    bw = copy_bandwidth(device)
    params = SamplingParams(temperature=1.0, top_p=args.default_top_p)
    fast = not a.no_compile and device.type == "cuda"
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
        "fast": [],
        "eager": [],
    }
    for batch in [int(b) for b in a.batch_sizes.split(",")]:
        steps = 0 if (batch == 1 and a.full_b1) else a.decode_steps
        row, _ = run_case(model, args, batch, prompt_len, num_new, steps, fast, None, params, device)
        need = bytes_per_step(args, batch, prompt_len, num_new)
        row["floor_ms"] = 1000 * (need["weights_read"] + need["kv_mean"]) / bw
        row["floor_ms_issue"] = 1000 * (need["weights_all"] + need["kv_mean"]) / bw
        row["ratio_to_floor"] = row["decode_ms_per_step"] / row["floor_ms"]
        row["ratio_to_floor_issue"] = row["decode_ms_per_step"] / row["floor_ms_issue"]
        report["fast"].append(row)
        eager, _ = run_case(model, args, batch, prompt_len, num_new, a.eager_steps, False, False, params, device)
        eager["ratio_to_floor"] = eager["decode_ms_per_step"] / row["floor_ms"]
        report["eager"].append(eager)
        print(json.dumps({"fast": row, "eager": eager}), flush=True)
    b1 = [r for r in report["fast"] if r["batch"] == 1]
    for r in report["fast"]:
        if b1:
            r["speedup_tokens_per_s_vs_b1"] = r["tokens_per_s"] / b1[0]["tokens_per_s"]

    if a.equality_steps and fast:
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

    with open(a.out, "w") as f:
        json.dump(_finite(report), f, indent=2)
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
        f"{'mode':<7}{'B':>3}{'prefill s':>11}{'ms/step':>10}{'total s':>9}{'tok/s':>10}{'floor ms':>10}"
        f"{'ratio':>7}{'peak GiB':>10}{'warmup s':>10}"
    )
    for mode in ("fast", "eager"):
        for fast_row, r in zip(report["fast"], report[mode], strict=True):
            print(
                f"{mode:<7}{r['batch']:>3}{r['prefill_s']:>11.3f}{r['decode_ms_per_step']:>10.2f}"
                f"{r['total_decode_s']:>9.1f}{r['tokens_per_s']:>10.1f}{fast_row['floor_ms']:>10.2f}"
                f"{r.get('ratio_to_floor', float('nan')):>7.2f}{r['peak_gib']:>10.2f}{r['warmup_s']:>10.1f}"
            )
    if "greedy_equality" in report:
        print("greedy fast vs eager:", report["greedy_equality"])


if __name__ == "__main__":
    main()
