#!/usr/bin/env python3
"""What the collectives of one tensor-parallel decode step cost on their own (why TP=2 is not 0.5x TP=1).

One TP decode step of the Cosmos AR model runs, per layer, an all-reduce after each row-parallel matrix
(self-attention ``wo``, cross-attention ``wo``, ``w2``: B x dim values each), plus one all-reduce of the
vocabulary-parallel embedding and one all-gather of the logits. This replays exactly that sequence of
collectives, captured in one CUDA graph as the decode step is, with nothing else in between.

GPU (2 GPUs; NVLink multicast off as on the device machines):
    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node 2 scripts/bench_collectives.py --out coll.json
CPU smoke run (gloo, no graph):
    torchrun --standalone --nproc-per-node 2 scripts/bench_collectives.py --device cpu --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from cosmos_cli.models.config import PRESETS

_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the older name


def step_collectives(args, batch: int, world: int, device, dtype):
    """The collectives of one decode step, as a zero-argument function over preallocated buffers."""
    cross_layers = sum(args.has_cross_attn(i) for i in range(args.n_layers))
    reduces = 2 * args.n_layers + cross_layers + 1  # wo, w2 per layer; cross wo; the embedding
    hidden = [torch.randn(batch, 1, args.dim, device=device, dtype=dtype) for _ in range(reduces)]
    local_logits = torch.randn(batch, args.output_rows // world, device=device, dtype=dtype)
    gathered = local_logits.new_empty((world * batch, args.output_rows // world))

    def run() -> None:
        for h in hidden:
            dist.all_reduce(h)
        _all_gather(gathered, local_logits)

    return run, reduces


def timed(fn, steps: int, device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return 1000 * (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=list(PRESETS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", default=None)
    a = p.parse_args()

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if a.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    args = PRESETS[a.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows = []
    for batch in (int(b) for b in a.batch_sizes.split(",")):
        run, reduces = step_collectives(args, batch, world, device, dtype)
        eager_ms = timed(run, a.steps, device)
        graph_ms = None
        if device.type == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                run()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run()
            graph_ms = timed(graph.replay, a.steps, device)
        rows.append({"batch": batch, "all_reduces": reduces, "all_gathers": 1, "eager_ms_per_step": eager_ms,
                     "graph_ms_per_step": graph_ms,
                     "us_per_collective_in_graph": graph_ms * 1000 / (reduces + 1) if graph_ms else None})  # fmt: skip
    if rank == 0:
        report = {"world": world, "preset": a.preset, "device": str(device), "rows": rows}
        if device.type == "cuda":
            report["gpu"] = torch.cuda.get_device_name(device)
            report["nccl_nvls_enable"] = os.environ.get("NCCL_NVLS_ENABLE")
        print(json.dumps(report, indent=1), flush=True)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(report, f, indent=1)
    if device.type == "cpu":  # with NCCL work captured in a graph, teardown can hang; exiting frees it all
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
