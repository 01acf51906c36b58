#!/usr/bin/env python3
"""Tensor-parallel decode benchmark: TP=1 vs TP=2 (or any sizes) with the fast decode path, under torchrun.

GPU (2 x H100, the numbers in docs/parallel.md):
    torchrun --standalone --nproc-per-node 2 scripts/bench_tp.py --out bench_tp.json
    python scripts/bench_tp.py --gpus 2 --out bench_tp.json        # the same, launching itself
CPU smoke run (gloo, tiny model, seconds):
    python scripts/bench_tp.py --gpus 2 --device cpu --preset tiny --steps 16 --out /tmp/tp.json

Weights are random at the preset's shape (``--load-format dummy``), generated tensor by tensor from a
seed on every rank, so TP=1 and TP=k use the same model and each rank keeps only its slices
(``load_sharded``). For each TP size the world splits into ``world / tp`` groups that all run the same
greedy decode (``ARGenerator``: compiled step captured in a CUDA graph); rank 0's group is reported.
Measured per size: decode ms/token, prefill s, peak GiB on every GPU, and the greedy tokens, compared
with TP=1 step by step (bf16 partial sums are added in a different order under TP, so a near-tie in
the logits can flip one token; the first divergence and the logits difference are reported).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import zlib
from collections.abc import Iterator, Mapping
from datetime import date

import torch

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.config import PRESETS, ModelArgs
from cosmos_cli.parallel.dist import (
    DistContext,
    ParallelDims,
    gather_objects,
    init_distributed,
    init_model_parallel,
    teardown,
)
from cosmos_cli.parallel.launch import TorchrunEnv, format_command, relaunch, torchrun_command
from cosmos_cli.parallel.tp import apply_tp, load_sharded

GREEDY = SamplingParams(temperature=0.0)


class DummyWeights(Mapping):
    """A full-shape state dict whose tensors are generated on demand from ``seed`` and their name.

    Every rank gets bit-identical tensors without any file; only one full tensor exists at a time.
    """

    def __init__(self, args: ModelArgs, seed: int, device: torch.device):
        with torch.device("meta"):
            self.shapes = {k: v.shape for k, v in Transformer(args).state_dict().items()}
        self.seed, self.device = seed, device

    def __getitem__(self, key: str) -> torch.Tensor:
        shape = self.shapes[key]
        if key.endswith("norm.weight"):
            return torch.ones(shape, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(self.seed + zlib.crc32(key.encode()))
        return torch.randn(shape, generator=gen, device=self.device).mul_(0.02)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def run_tp(ctx: DistContext, args: ModelArgs, tp: int, a, dtype: torch.dtype) -> dict:
    device = ctx.device
    dims = ParallelDims(ctx.dims.world, tp, ctx.dims.rank)
    tp_group, _ = init_model_parallel(dims)
    with torch.device("meta"):
        model = Transformer(args)
    apply_tp(model, tp_group)
    load_sharded(model, DummyWeights(args, a.seed, device), dtype=dtype, device=device)
    model.eval().requires_grad_(False)
    model.fuse_projections()
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    if device.type == "cuda":  # peak from here on: the model, caches and decode, not the generated full tensors
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    gen = torch.Generator().manual_seed(a.seed)
    latent_t = 1 if a.num_input_frames == 1 else 2
    prompt_len = latent_t * args.tokens_per_frame + int(args.has_bov)
    prompt = torch.randint(0, args.video_vocab_size, (a.batch, prompt_len), generator=gen)
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    context = None
    if args.cross_attn_every_k_layers:
        context = torch.randn(a.batch, args.context_len, args.context_dim, generator=gen).to(device, dtype)
    prompt = prompt.to(device)
    steps = min(a.steps, args.num_video_tokens - latent_t * args.tokens_per_frame)
    seeds = torch.zeros(a.batch, dtype=torch.long)
    fast = device.type == "cuda"
    generator = ARGenerator(model, compile=fast and not a.no_compile, cuda_graph=fast)
    generator.generate(prompt, steps, GREEDY, seeds, context=context)  # compiles and captures
    warmup_s = generator.stats.warmup_s
    tokens = generator.generate(prompt, steps, GREEDY, seeds, context=context)
    stats = generator.stats
    with torch.no_grad():  # the prompt's last logits, to judge a token divergence against
        model.setup_caches(a.batch, dtype, device)
        last = model(prompt, torch.arange(prompt_len, device=device), prefill=True, last_only=True)[:, -1]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    row = {
        "tp": tp,
        "dp": dims.dp,
        "rank": dims.rank,
        "decode_ms_per_token": stats.ms_per_token,
        "tokens_per_s": a.batch * 1000 / stats.ms_per_token,
        "prefill_s": stats.prefill_s,
        "warmup_s": warmup_s,
        "weights_gib": weights_gib,
        "peak_gib": peak,
        "tokens": tokens.cpu().tolist(),
        "last_logits": last.float().cpu().tolist(),
    }
    del generator, model
    torch._dynamo.reset()  # the compiled step and its graphs hold the model; free them before the next size
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def compare(base: dict, other: dict) -> dict:
    a, b = torch.tensor(base["tokens"]), torch.tensor(other["tokens"])
    same = (a == b).all(dim=0)
    first = None if bool(same.all()) else int((~same).nonzero()[0])
    diff = (torch.tensor(base["last_logits"]) - torch.tensor(other["last_logits"])).abs().max()
    return {
        "steps": int(a.shape[1]),
        "equal": first is None,
        "first_divergence": first,
        "prefill_last_logits_max_abs_diff": float(diff),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=[*PRESETS, "tiny"])
    p.add_argument("--tp-sizes", default="1,2", help="comma-separated; each must divide the world size")
    p.add_argument("--steps", type=int, default=256, help="decode steps timed and compared")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--num-input-frames", type=int, default=9, choices=[1, 9])
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--gpus", type=int, default=2, help="processes to launch when not already under torchrun")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_tp.json")
    a = p.parse_args()

    if TorchrunEnv.from_environ() is None:
        cmd = torchrun_command(a.gpus, argv=sys.argv[1:], target=[__file__])
        print(format_command(cmd), file=sys.stderr)
        relaunch(cmd)
        return
    args = TINY_V2W if a.preset == "tiny" else PRESETS[a.preset]
    sizes = [int(t) for t in a.tp_sizes.split(",")]
    ctx = init_distributed(max(sizes), device_type=a.device)
    dtype = torch.bfloat16 if ctx.device.type == "cuda" else torch.float32
    rows = {}
    for tp in sizes:
        rows[tp] = gather_objects(run_tp(ctx, args, tp, a, dtype), ctx)
    if ctx.dims.is_main:
        report = {
            "date": date.today().isoformat(),
            "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
            "world": ctx.dims.world,
            "backend": ctx.backend,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())) if ctx.device.type == "cuda" else None,
            "torch": torch.__version__,
            "preset": args.name,
            "dtype": str(dtype),
            "compile": ctx.device.type == "cuda" and not a.no_compile,
            "batch": a.batch,
            "command": format_command([sys.executable, *sys.argv]),
            "results": [],
        }
        base = rows[sizes[0]][0]
        for tp in sizes:
            main_row = rows[tp][0]
            report["results"].append(
                {
                    **{k: v for k, v in main_row.items() if k not in ("tokens", "last_logits", "rank")},
                    "peak_gib_per_rank": [r["peak_gib"] for r in rows[tp]],
                    "speedup_vs_first": base["decode_ms_per_token"] / main_row["decode_ms_per_token"],
                    "greedy_vs_first": compare(base, main_row),
                    "ranks_agree": all(r["tokens"] == main_row["tokens"] for r in rows[tp]),
                }
            )
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)
        print_table(report)
    teardown()


def print_table(report: dict) -> None:
    print(f"\n{report['device']} x{report['world']}  {report['preset']}  {report['dtype']}  B={report['batch']}")
    print(f"{'TP':>3}{'ms/token':>10}{'speedup':>9}{'prefill s':>11}{'weights GiB':>13}{'peak GiB/rank':>22}  greedy")
    for r in report["results"]:
        peaks = ", ".join(f"{g:.1f}" for g in r["peak_gib_per_rank"])
        eq = r["greedy_vs_first"]
        greedy = f"equal {eq['steps']}" if eq["equal"] else f"diverges at {eq['first_divergence']}"
        print(
            f"{r['tp']:>3}{r['decode_ms_per_token']:>10.2f}{r['speedup_vs_first']:>9.2f}{r['prefill_s']:>11.3f}"
            f"{r['weights_gib']:>13.2f}{peaks:>22}  {greedy}"
        )


if __name__ == "__main__":
    main()
