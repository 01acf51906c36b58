#!/usr/bin/env python3
"""Benchmark speculative coupled decoding (``--decoding scd``): verify-pass cost and the steps it saves.

GPU (the numbers in docs/speculative-decoding.md; about 10 minutes on one H100):
    python scripts/bench_scd.py --preset 5b-video2world --out bench_scd.json
CPU smoke run (seconds; the tiny preset at every step):
    python scripts/bench_scd.py --preset tiny --device cpu --sections verify,entropy --samples 2 --out /tmp/s.json
Verify cost up to K=128 for each weight format (GPU, a few minutes):
    python scripts/bench_scd.py --sections verify-cost --quantization bf16,int8,fp8 --out bench_scd_cost.json
CPU with the trained model (a few minutes):
    python scripts/bench_scd.py --preset tiny --device cpu --sections trained --train-seconds 150

Sections:

``verify``: at the preset's real shape with random weights (``--load-format dummy``), batch 1, at a context
of ``--context`` tokens: one sequential decode step (ARGenerator, compiled, CUDA graph) against one SCD
iteration for K = ``--windows`` (forward of K tokens + top-p over K x V + coupling + commit, one CUDA graph),
plus the model forward alone and the top-p filter alone (sort vs sort-free bisection). Random weights
accept almost nothing, so this section measures cost only.

``entropy``: the tiny architecture with random weights large enough to make the outputs depend on the
context, its logits scaled to several entropies: tokens committed per forward and wall-clock against
sequential decoding, per window and draft initialiser.

``trained``: the tiny architecture trained for ``--train-seconds`` on DV tokens of the shared clips
(``scripts/train_tiny_ar.py``; video redundancy like the real model sees), evaluated on the held-out clip:
the same measurements at top-p 0.7 and 0.9.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_cli.decode.drafts import DRAFT_NAMES  # noqa: E402
from cosmos_cli.decode.generator import ARGenerator  # noqa: E402
from cosmos_cli.decode.sampling import SamplingParams  # noqa: E402
from cosmos_cli.decode.speculative import SpeculativeGenerator, target_probs  # noqa: E402
from cosmos_cli.models.ar.tiny import TINY_V2W  # noqa: E402
from cosmos_cli.models.ar.weights import build_model  # noqa: E402
from cosmos_cli.models.config import PRESETS, ModelArgs  # noqa: E402
from scripts import train_tiny_ar  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, repeats: int) -> float:
    """Mean milliseconds per call of ``fn`` after three warm-up calls."""
    for _ in range(3):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return 1000 * (time.perf_counter() - t0) / repeats


def as_graph(fn, device: torch.device):
    """``fn`` captured in a CUDA graph (a replay callable); ``fn`` itself on CPU."""
    if device.type != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def random_prompt(args: ModelArgs, length: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, args.video_vocab_size, (1, length), generator=gen)
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    return prompt.to(device)


def random_context(args: ModelArgs, device: torch.device) -> torch.Tensor | None:
    if not args.cross_attn_every_k_layers:
        return None
    return torch.randn(1, args.context_len, args.context_dim, generator=torch.Generator().manual_seed(1)).to(device)


# ---- section 1: cost of a verify pass at the real shape ----------------------------------------------------
@torch.no_grad()
def verify_section(args: ModelArgs, a, device: torch.device, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    model = build_model(args, weights=None, dtype=dtype, device=device)
    if device.type == "cuda":
        model.fuse_projections()
    context_tokens = min(a.context, args.max_seq_len - 1)
    steps = min(a.steps, context_tokens // 2)
    prompt = random_prompt(args, context_tokens - steps, device)
    ctx = random_context(args, device)
    params = SamplingParams(1.0, args.default_top_p)
    seeds = torch.zeros(1, dtype=torch.long)
    compile = device.type == "cuda" and not a.no_compile

    ar = ARGenerator(model, compile=compile)
    ar.generate(prompt, steps, params, seeds, context=ctx)  # compile + capture
    ar.generate(prompt, steps, params, seeds, context=ctx)
    step_ms = ar.stats.ms_per_token
    report = {"context": context_tokens, "decode_step_ms": step_ms, "compile": compile, "windows": []}
    print(f"sequential decode step at context ~{context_tokens}: {step_ms:.3f} ms", flush=True)

    last = context_tokens - 1
    fwd1 = forward_ms(model, 1, last, device, a.repeats)
    report["forward_1_ms"] = fwd1
    for method, windows in (("sort", a.windows), ("bisect", a.bisect_windows)):
        for window in windows:
            gen = SpeculativeGenerator(model, window=window, draft="uniform", compile=compile, top_p_method=method)
            gen.generate(prompt, steps, params, seeds, context=ctx)  # compile + capture
            gen.generate(prompt, steps, params, seeds, context=ctx)
            in_loop = 1000 * gen.stats.decode_s / max(gen.stats.iterations, 1)
            # The state is now finished (n = L): an iteration still runs the full window at context L.
            run = gen._replay_fn(params, prompt.shape[1] + steps)
            iteration = time_ms(run, device, a.repeats)
            row = {
                "window": window,
                "top_p_method": method,
                "iteration_ms": iteration,
                "iteration_in_generate_ms": in_loop,
                "ratio_to_decode_step": iteration / step_ms,
                "forward_ms": forward_ms(model, window, last, device, a.repeats),
                "top_p_ms": top_p_ms(args, window, params, method, device, a.repeats),
                "tokens_per_forward_random_weights": gen.stats.tokens_per_forward,
            }
            row["forward_ratio"] = row["forward_ms"] / fwd1
            report["windows"].append(row)
            print(json.dumps(row), flush=True)
            del gen
    model.free_caches()
    return report


def forward_ms(model, window: int, last: int, device: torch.device, repeats: int) -> float:
    """The model forward alone for ``window`` tokens ending at position ``last`` (CUDA graph on GPU)."""
    tokens = torch.zeros(1, window, dtype=torch.long, device=device)
    positions = torch.arange(last - window + 1, last + 1, device=device)[None]
    return time_ms(as_graph(lambda: model(tokens, positions), device), device, repeats)


def top_p_ms(args: ModelArgs, window: int, params, method: str, device: torch.device, repeats: int) -> float:
    """Temperature + top-p + renormalisation over (window, V) logits alone (CUDA graph on GPU)."""
    logits = torch.randn(1, window, args.output_rows, device=device)
    return time_ms(as_graph(lambda: target_probs(logits, params, method), device), device, repeats)


# ---- section 1b: verify cost up to K=128 under each --quantization -------------------------------------------
@torch.no_grad()
def verify_cost_section(args: ModelArgs, a, device: torch.device, dtype: torch.dtype) -> dict:
    """Model forward of K tokens (CUDA graph, no compile) at context ``--context`` for each weight format,
    against the same forward of one token; top-p over K x V alone; optionally whole SCD iterations (compiled,
    as ``verify``) for ``--iteration-windows``. Where the forward of K tokens stops costing about one token's,
    the verify pass has stopped being bound by the weight bytes."""
    from cosmos_cli.quant.kernels import tuned_configs
    from scripts.bench_ar import build

    context_tokens = min(a.context, args.max_seq_len - 1)
    last = context_tokens - 1
    params = SamplingParams(1.0, args.default_top_p)
    report = {"context": context_tokens, "windows": a.cost_windows, "modes": {}, "top_p_ms": {}}
    for window in a.cost_windows:
        report["top_p_ms"][window] = top_p_ms(args, window, params, "sort", device, a.repeats)
    for mode in a.quantization.split(","):
        model = build(args, mode, dtype, device)
        model.setup_caches(1, dtype, device)
        for layer in model.layers:  # random keys/values: the attention reads real-looking data
            layer.attention.kv_cache.k.normal_()
            layer.attention.kv_cache.v.normal_()
        ctx = random_context(args, device)
        if ctx is not None:
            model.set_context(ctx.to(dtype))
        fwd = {k: forward_ms(model, k, last, device, a.repeats) for k in [1, *a.cost_windows]}
        entry = {"forward_ms": fwd, "forward_ratio": {k: v / fwd[1] for k, v in fwd.items()}, "iterations": []}
        print(mode, json.dumps(entry), flush=True)
        model.free_caches()
        if a.iteration_windows and device.type == "cuda":
            prompt = random_prompt(args, context_tokens - a.steps, device)
            seeds = torch.zeros(1, dtype=torch.long)
            ar = ARGenerator(model, compile=not a.no_compile)
            ar.generate(prompt, a.steps, params, seeds, context=ctx)
            ar.generate(prompt, a.steps, params, seeds, context=ctx)
            entry["decode_step_ms"] = ar.stats.ms_per_token
            del ar
            for window in a.iteration_windows:
                gen = SpeculativeGenerator(model, window=window, draft="uniform", compile=not a.no_compile)
                gen.generate(prompt, a.steps, params, seeds, context=ctx)
                gen.generate(prompt, a.steps, params, seeds, context=ctx)
                run = gen._replay_fn(params, prompt.shape[1] + a.steps)
                ms = time_ms(run, device, a.repeats)
                entry["iterations"].append({"window": window, "iteration_ms": ms,
                                            "ratio_to_decode_step": ms / entry["decode_step_ms"]})  # fmt: skip
                print(mode, json.dumps(entry["iterations"][-1]), flush=True)
                del gen
            model.free_caches()
        report["modes"][mode] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if device.type == "cuda":
        report["tuned_kernels"] = tuned_configs()  # which tile each window's linears got
    return report


# ---- sections 2 and 3: steps saved on models with structure -----------------------------------------------
def decode_runs(model, args, prompts, num_new, params, windows, drafts, device, context) -> dict:
    """Sequential vs SCD on each prompt (batch 1): tokens per forward, acceptance, wall-clock."""
    seeds = [torch.tensor([i]) for i in range(len(prompts))]
    seq_s = 0.0
    for prompt, seed in zip(prompts, seeds, strict=True):
        ar = ARGenerator(model, compile=False)  # a fresh generator per call: its graph holds its buffers
        ar.generate(prompt, num_new, params, seed, context=context)
        seq_s += ar.stats.prefill_s + ar.stats.decode_s
    out = {"sequential_s": seq_s, "runs": []}
    for window in windows:
        for draft in drafts:
            gen = SpeculativeGenerator(model, window=window, draft=draft)
            gen.generate(prompts[0], num_new, params, seeds[0], context=context)  # capture on GPU
            total, per_forward, fresh, coupled = 0.0, [], [], []
            for prompt, seed in zip(prompts, seeds, strict=True):
                gen.generate(prompt, num_new, params, seed, context=context)
                st = gen.stats
                total += st.prefill_s + st.decode_s
                per_forward.append(st.tokens_per_forward)
                fresh.append(st.fresh_acceptance)
                coupled.append(st.coupled_acceptance)
            row = {
                "window": window,
                "draft": draft,
                "tokens_per_forward": sum(per_forward) / len(per_forward),
                "fresh_acceptance": _nanmean(fresh),
                "coupled_acceptance": _nanmean(coupled),
                "scd_s": total,
                "wall_clock_speedup": seq_s / total,
            }
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
    return out


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")


@torch.no_grad()
def distribution_stats(model, prompts, num_new, params, context) -> dict[str, float]:
    """How peaked the model is and how much its distributions depend on the prefix.

    ``entropy_nats``: mean entropy of the T=1 distributions along sequentially sampled continuations.
    ``context_tv``: mean total variation between the warped distributions at the same position after two
    different prompts and continuations. A coupled draft survives a pass with probability
    ``1 - TV(p_new, p_old)``, so a model whose outputs barely move with the prefix (random weights) keeps
    drafts easily whatever its entropy.
    """
    warped, entropy = [], []
    for i, prompt in enumerate(prompts[:2]):
        tokens = ARGenerator(model).generate(prompt, num_new, params, torch.tensor([100 + i]), context=context)
        full = torch.cat([prompt, tokens], dim=1)
        positions = torch.arange(full.shape[1], device=full.device)
        logits = model(full, positions, prefill=True)[:, prompt.shape[1] - 1 : -1]
        logp = logits.log_softmax(-1)
        entropy.append(float(-(logp.exp() * logp).sum(-1).mean()))
        warped.append(target_probs(logits, params))
    model.free_caches()
    tv = 0.5 * (warped[0] - warped[-1]).abs().sum(-1).mean()
    return {"entropy_nats": sum(entropy) / len(entropy), "context_tv": float(tv)}


@torch.no_grad()
def entropy_section(a, device: torch.device) -> dict:
    args = TINY_V2W
    prompt_len = 1 + 2 * args.tokens_per_frame
    num_new = args.num_video_tokens + 1 - prompt_len
    prompts = [random_prompt(args, prompt_len, device, seed=s) for s in range(a.samples)]
    context = random_context(args, device)
    params = SamplingParams(1.0, args.default_top_p)
    report = {"model": args.name, "prompt_len": prompt_len, "num_new": num_new, "top_p": params.top_p, "scales": []}
    for scale in a.logit_scales:
        model = build_model(args, weights=None, dtype=torch.float32, device=device)
        gen = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if not name.endswith("norm.weight"):
                init = torch.randn(param.shape, generator=gen) * 1.5 / math.sqrt(param.shape[-1])
                param.copy_(init.to(device) * (scale if name == "output.weight" else 1.0))
        dist = distribution_stats(model, prompts, num_new, params, context)
        print(f"logit scale {scale}: {json.dumps(dist)}", flush=True)
        runs = decode_runs(model, args, prompts, num_new, params, a.tiny_windows, DRAFT_NAMES, device, context)
        report["scales"].append({"logit_scale": scale, **dist, **runs})
    return report


@torch.no_grad()
def trained_section(a, device: torch.device) -> dict:
    args = train_tiny_ar.TRAIN_ARGS
    data, held = train_tiny_ar.dataset(args)
    if a.trained_weights and Path(a.trained_weights).exists():
        model = build_model(args, weights=Path(a.trained_weights), dtype=torch.float32, device=device)
        trained = {"weights": str(a.trained_weights)}
    else:
        with torch.enable_grad():
            model = train_tiny_ar.train(data, args, seconds=a.train_seconds, device=device)
        trained = {"train_seconds": a.train_seconds}
        if a.trained_weights:
            train_tiny_ar.save(model, Path(a.trained_weights))
    model = model.to(device)
    frame = args.tokens_per_frame
    trained.update(train_tiny_ar.evaluate(model, held[:64]))
    trained["held_out_prev_frame_copy_rate"] = float((held[:, 1 + frame :] == held[:, 1:-frame]).float().mean())
    print("trained model:", json.dumps(trained), flush=True)
    prompt_len = 1 + 2 * frame
    num_new = args.num_video_tokens + 1 - prompt_len
    picks = torch.linspace(0, held.shape[0] - 1, a.samples).long()
    prompts = [held[i : i + 1, :prompt_len].to(device) for i in picks]
    context = torch.zeros(1, args.context_len, args.context_dim, device=device)
    report = {"model": trained, "prompt_len": prompt_len, "num_new": num_new, "top_p": []}
    for top_p in a.top_ps:
        params = SamplingParams(1.0, top_p)
        dist = distribution_stats(model, prompts, num_new, params, context)
        runs = decode_runs(model, args, prompts, num_new, params, a.tiny_windows, DRAFT_NAMES, device, context)
        report["top_p"].append({"top_p": top_p, **dist, **runs})
    return report


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=[*PRESETS, "tiny"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sections", default="verify,entropy,trained")
    p.add_argument("--windows", type=_ints, default=[8, 16, 32, 64], help="K for the verify section")
    p.add_argument("--bisect-windows", type=_ints, default=[32], help="K timed again with sort-free top-p")
    p.add_argument("--cost-windows", type=_ints, default=[8, 16, 32, 64, 96, 128], help="K for verify-cost")
    p.add_argument("--quantization", default="bf16", help="verify-cost: comma-separated bf16,int8,fp8")
    p.add_argument("--iteration-windows", type=_ints, default=[], help="verify-cost: K timed as whole iterations")
    p.add_argument("--context", type=int, default=8961, help="tokens in the cache for the verify section")
    p.add_argument("--steps", type=int, default=256, help="tokens generated before timing (verify section)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--tiny-windows", type=_ints, default=[8, 16, 32, 64])
    p.add_argument("--logit-scales", type=_floats, default=[0.25, 0.5, 1.0, 2.0, 4.0])
    p.add_argument("--top-ps", type=_floats, default=[0.7, 0.9])
    p.add_argument("--samples", type=int, default=8, help="prompts per measurement (entropy, trained)")
    p.add_argument("--train-seconds", type=float, default=150.0)
    p.add_argument("--trained-weights", default=None, help="load (or save after training) the trained model")
    p.add_argument("--out", default="bench_scd.json")
    a = p.parse_args()

    device = torch.device(a.device)
    torch._dynamo.config.recompile_limit = 64  # one compiled iteration per window and top-p method
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny models: threads only add contention noise to the timings
    args = TINY_V2W if a.preset == "tiny" else PRESETS[a.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sections = set(a.sections.split(","))
    report = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "preset": args.name,
    }
    if "verify" in sections:
        report["verify"] = verify_section(args, a, device, dtype)
    if "verify-cost" in sections:
        report["verify_cost"] = verify_cost_section(args, a, device, dtype)
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)
    if "entropy" in sections:
        report["entropy"] = entropy_section(a, device)
    if "trained" in sections:
        report["trained"] = trained_section(a, device)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
    print_tables(report)


def print_tables(report: dict) -> None:
    print(f"\n{report['device']}  {report['preset']}  torch {report['torch']}")
    if "verify" in report:
        v = report["verify"]
        print(f"\nverify pass vs decode step ({v['decode_step_ms']:.3f} ms) at context {v['context']}")
        print(f"{'K':>4}{'top-p':>8}{'iter ms':>9}{'ratio':>7}{'fwd ms':>9}{'fwd/fwd1':>9}{'top-p ms':>10}")
        for r in v["windows"]:
            print(
                f"{r['window']:>4}{r['top_p_method']:>8}{r['iteration_ms']:>9.3f}{r['ratio_to_decode_step']:>7.2f}"
                f"{r['forward_ms']:>9.3f}{r['forward_ratio']:>9.2f}{r['top_p_ms']:>10.3f}"
            )
    if "verify_cost" in report:
        v = report["verify_cost"]
        modes = list(v["modes"])
        print(f"\nverify cost at context {v['context']}: forward of K tokens (ms, CUDA graph) and ratio to 1 token")
        print(f"{'K':>4}" + "".join(f"{m + ' ms':>12}{'x1':>6}" for m in modes) + f"{'top-p ms':>10}")
        for k in [1, *v["windows"]]:
            cells = "".join(
                f"{v['modes'][m]['forward_ms'][k]:>12.3f}{v['modes'][m]['forward_ratio'][k]:>6.2f}" for m in modes
            )
            print(f"{k:>4}{cells}{v['top_p_ms'].get(k, float('nan')):>10.3f}")
        for m in modes:
            for r in v["modes"][m]["iterations"]:
                print(f"  {m} SCD iteration K={r['window']}: {r['iteration_ms']:.3f} ms = "
                      f"{r['ratio_to_decode_step']:.2f}x its decode step")  # fmt: skip
    blocks = []
    if "entropy" in report:
        blocks += [(f"random, logit scale {s['logit_scale']}", s) for s in report["entropy"]["scales"]]
    if "trained" in report:
        blocks += [(f"trained, top-p {t['top_p']}", t) for t in report["trained"]["top_p"]]
    for title, block in blocks:
        print(
            f"\n{title}: entropy {block['entropy_nats']:.2f} nats, context TV {block['context_tv']:.2f}; "
            "tokens per forward, draft acceptance (fresh / coupled), wall-clock speedup"
        )
        for r in block["runs"]:
            print(
                f"  K={r['window']:<3} {r['draft']:<11} {r['tokens_per_forward']:6.2f} tok/fwd"
                f"  fresh {r['fresh_acceptance']:.2f}  coupled {r['coupled_acceptance']:.2f}"
                f"  {r['wall_clock_speedup']:5.2f}x"
            )


if __name__ == "__main__":
    main()
