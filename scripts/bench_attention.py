#!/usr/bin/env python3
"""The decode attention alone: the split-K cache kernel under several tunings, against its KV-read floor.

GPU (about 2 minutes on one H100):
    python scripts/bench_attention.py --out bench_attention.json

For each (batch, valid keys) case the 5B model's 16 self-attention calls of one decode step (one query token,
32 query heads over 8 KV heads of 128 channels) are captured in one CUDA graph and timed, for every tuning of
``cosmos_cli.models.ar.cache_attention.TUNING`` in the list below; the floor is the valid K/V bytes over the
measured copy bandwidth. The cross-attention of one step (512 context keys, every one visible) is timed the
same way through the split-K kernel and through SDPA (what the model runs: on an H100 the kernel saved
0.015 ms of a 3.87 ms step at batch 1 and was slower at batch 8, so cross-attention stays on SDPA;
docs/benchmarks.md). Each result is checked against the plain-torch reference first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_cli.models.ar import cache_attention as ca  # noqa: E402
from cosmos_cli.models.config import PRESETS  # noqa: E402
from scripts.bench_gemv import copy_bandwidth, graph_ms  # noqa: E402

GRID = {
    "block_n": (32, 64, 128),
    "num_warps": (4, 8),
    "num_stages": (2, 3),
    "max_splits": (32, 64, 96, 128),
    "tiles_per_split": (1, 2),
}


def tunings():
    keys = list(GRID)
    for values in itertools.product(*GRID.values()):
        yield dict(zip(keys, values, strict=True))


def case_inputs(args, batch: int, keys: int, layers: int, device):
    hq, hkv, d = args.n_heads, args.n_kv_heads, args.head_dim
    q = torch.randn(layers, batch, 1, hq, d, device=device, dtype=torch.bfloat16)
    k = torch.randn(layers, batch, hkv, args.max_seq_len, d, device=device, dtype=torch.bfloat16)
    v = torch.randn_like(k)
    pos = torch.full((batch, 1), keys - 1, device=device, dtype=torch.int64)
    return q, k, v, pos


def time_tuning(tuning: dict, q, k, v, pos, scale: float, ref) -> dict:
    """One tuning's error (first layer) and ms per decode step (every layer, one CUDA graph)."""
    ca.TUNING.update(tuning)
    layers = q.shape[0]
    try:
        out = ca._triton_cache_attention(q[0], k[0], v[0], pos, scale)
        err = float((out.float() - ref).norm() / ref.norm())
        ms = graph_ms(lambda i: ca._triton_cache_attention(q[i], k[i], v[i], pos, scale), layers) * layers
    except Exception as e:  # noqa: BLE001 - a tuning that does not fit is recorded and skipped
        return {**tuning, "error": f"{type(e).__name__}: {e}"[:200]}
    return {**tuning, "ms": ms, "rel_err": err}


def time_cross(args, batch: int, scale: float, device) -> dict:
    """One step's cross-attention (every layer) through the kernel and through SDPA."""
    layers, length = args.n_layers, args.context_len
    q = torch.randn(layers, batch, 1, args.n_heads, args.head_dim, device=device, dtype=torch.bfloat16)
    k = torch.randn(layers, batch, args.n_kv_heads, length, args.head_dim, device=device, dtype=torch.bfloat16)
    v = torch.randn_like(k)

    def sdpa(i):
        return F.scaled_dot_product_attention(q[i].transpose(1, 2), k[i], v[i], scale=scale, enable_gqa=True)

    def kernel(i):
        pos = torch.full((batch, 1), length - 1, device=device, dtype=torch.int64)
        return ca.cache_attention(q[i], k[i], v[i], pos, scale)  # every key visible

    ref = sdpa(0).transpose(1, 2).float()
    out = kernel(0).float()
    return {
        "batch": batch,
        "keys": length,
        "kernel_rel_err_vs_sdpa": float((out - ref).norm() / ref.norm()),
        "kernel_ms": graph_ms(kernel, layers) * layers,
        "sdpa_ms": graph_ms(sdpa, layers) * layers,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=list(PRESETS))
    p.add_argument("--cases", default="1:5126,1:9000,1:12800,8:9000")
    p.add_argument("--out", default="bench_attention.json")
    a = p.parse_args()
    args = PRESETS[a.preset]
    device = torch.device("cuda")
    layers = args.n_layers
    scale = args.head_dim**-0.5
    bw = copy_bandwidth()
    default = dict(ca.TUNING)
    report = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "copy_bandwidth_GBps": bw / 1e9, "default": default, "self": [], "cross": []}  # fmt: skip
    for case in a.cases.split(","):
        batch, keys = (int(x) for x in case.split(":"))
        q, k, v, pos = case_inputs(args, batch, keys, layers, device)
        floor_ms = 1000 * layers * 2 * batch * args.n_kv_heads * keys * args.head_dim * 2 / bw
        ref = ca.grouped_attention(q[0].float(), k[0, :, :, :keys].float(), v[0, :, :, :keys].float(),
                                   pos, scale)  # fmt: skip
        rows = [time_tuning(tuning, q, k, v, pos, scale, ref) for tuning in tunings()]
        ca.TUNING.clear()
        ca.TUNING.update(default)
        for r in rows:
            if "ms" in r:
                r["pct_floor"] = 100 * floor_ms / r["ms"]
        ok = sorted((r for r in rows if "ms" in r and r["rel_err"] < 1e-2), key=lambda r: r["ms"])
        current = next((r for r in rows if all(r.get(k) == default[k] for k in GRID)), None)
        entry = {"batch": batch, "keys": keys, "floor_ms": floor_ms, "current": current, "best": ok[:5],
                 "all": rows}  # fmt: skip
        report["self"].append(entry)
        print(json.dumps({k: entry[k] for k in ("batch", "keys", "floor_ms", "current")}), flush=True)
        print("  best", json.dumps(ok[:3]), flush=True)
        del q, k, v

    for batch in (1, 8):  # cross-attention: the text context's keys, all visible
        entry = time_cross(args, batch, scale, device)
        report["cross"].append(entry)
        print(json.dumps(entry), flush=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
