"""Benchmark the diffusion decoder split across GPUs: CFG-parallel and sequence-parallel against one GPU.

Random weights at the 7B shape (one 8x80x128 latent window, 20,480 tokens, cond + uncond), bf16, eager
blocks (the compiled single-GPU figure is ``scripts/bench_dd.py``'s). Run under torchrun with N processes;
rank 0 first times the one-GPU baseline alone, then all ranks time each layout that N allows (``cfg`` 1 or
2, ``sp = N / cfg``) over ``--calls`` guided denoiser calls after one warm-up, and check that the split
result equals the one-GPU one to bf16 rounding.

    torchrun --nproc-per-node 2 scripts/bench_dd_parallel.py --out dd_parallel_2gpu.json    # 2 x H100
    torchrun --nproc-per-node 8 scripts/bench_dd_parallel.py --out dd_parallel_8gpu.json    # 8 x H100
    python scripts/bench_dd_parallel.py --preset tiny --ranks 2 --out tiny.json             # CPU, gloo

A full video window is 16 guided calls; the stage time is about ``16 x`` the per-call time plus the CV
decode. Keep ``NCCL_NVLS_ENABLE=0`` set (our launcher sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_cli.parallel.dd import DDParallel  # noqa: E402
from cosmos_cli.parallel.launch import NVLS_ENV, TorchrunEnv, relaunch, torchrun_command  # noqa: E402
from scripts.bench_dd import PRESETS, build_net, make_denoiser  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(denoiser, x, sigma, calls: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds per guided call (after one warm-up) and the last call's output."""
    out = denoiser(x, sigma)
    _sync(device)
    if dist.is_initialized():
        dist.barrier()
    start = time.perf_counter()
    for _ in range(calls):
        out = denoiser(x, sigma)
    _sync(device)
    return (time.perf_counter() - start) / calls, out


def layouts(world: int) -> list[int]:
    """The CFG sizes to time on ``world`` ranks."""
    return [c for c in (1, 2) if world % c == 0 and world > 1]


@torch.no_grad()
def run(args: argparse.Namespace) -> dict:
    env = TorchrunEnv.from_environ()
    world = env.world if env else 1
    cuda = torch.cuda.is_available() and args.preset != "tiny"
    device = torch.device("cuda", env.local_rank if env else 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    dtype = torch.bfloat16 if cuda else torch.float32
    config, latent, context_len = PRESETS[args.preset]
    net = build_net(config, dtype, device)
    alone, noise, _ = make_denoiser(net, latent, context_len, dtype, device)
    sigma = torch.full((1,), 2.5, dtype=dtype, device=device)
    report = {"world": world, "device": torch.cuda.get_device_name(device) if cuda else "cpu", "rows": []}
    base_s, base_out = time_calls(alone, noise, sigma, args.calls, device)  # every rank: same work, in step
    report["rows"].append({"layout": "1 GPU", "cfg": 1, "sp": 1, "s_per_call": base_s, "speedup": 1.0})
    for cfg in layouts(world):
        parallel = DDParallel.create([list(range(world))], cfg)
        split = parallel.denoiser(
            net, alone.tokens[:1], alone.context[:1], guidance=alone.guidance, sigma_data=alone.sigma_data
        )
        seconds, out = time_calls(split, noise, sigma, args.calls, device)
        diff = float((out.float() - base_out.float()).abs().max())
        report["rows"].append(
            {"layout": f"cfg {cfg} x sp {world // cfg}", "cfg": cfg, "sp": world // cfg, "s_per_call": seconds,
             "speedup": base_s / seconds, "max_abs_diff_vs_1gpu": diff, "ref_scale": float(base_out.abs().max())}
        )  # fmt: skip
    if cuda:
        report["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    dist.destroy_process_group()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="7b")
    parser.add_argument("--calls", type=int, default=3, help="timed guided calls per layout")
    parser.add_argument("--ranks", type=int, default=None, help="not under torchrun: relaunch on this many ranks")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault(NVLS_ENV, "0")
    if TorchrunEnv.from_environ() is None and args.ranks:
        relaunch(torchrun_command(args.ranks, argv=sys.argv[1:], target=[__file__]))
        return 0
    report = run(args)
    if TorchrunEnv.from_environ() is None or int(os.environ.get("RANK", "0")) == 0:
        for row in report["rows"]:
            diff = row.get("max_abs_diff_vs_1gpu")
            extra = "" if diff is None else f"  max|diff| {diff:.2e} of {row['ref_scale']:.2f}"
            print(f"{row['layout']:>14s}  {row['s_per_call'] * 1e3:9.1f} ms/call  x{row['speedup']:.2f}{extra}")
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
