#!/usr/bin/env python3
"""Batch-1 decode linears: a wide sweep of the one-row Triton kernel's block sizes, per shape and format.

``cosmos_cli.quant.kernels`` times a short candidate list on first use; this script is how that list was
chosen. For every linear of the 5B model and every weight format (bf16, int8, fp8) it times each
configuration of the one-row kernel (and the tuned tensor-core kernel and cuBLAS bf16 for reference) with
the same method as ``bench_gemv.py``: 24 calls over rotating weight copies captured in one CUDA graph, so
L2 never holds the weights and launch gaps count as they do in a decode step. Every configuration is
checked against float32 on the same stored weights first (wrong ones are reported, never ranked).

GPU (a few minutes on one H100, mostly Triton compiles):
    python scripts/bench_gemv_sweep.py --out bench_gemv_sweep.json
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

from cosmos_cli.models.config import PRESETS  # noqa: E402
from cosmos_cli.quant import kernels  # noqa: E402
from cosmos_cli.quant.linear import quantize_weight  # noqa: E402
from scripts.bench_gemv import copy_bandwidth, shapes, time_rotating  # noqa: E402


def grid() -> list[tuple]:
    """One-row configurations with 8..64 float32 accumulator elements per thread."""
    out = []
    for block_n, block_k, warps, split in itertools.product((1, 2, 4, 8, 16), (256, 512, 1024, 2048), (4, 8), (1, 2)):
        per_thread = block_n * block_k // (32 * warps)
        if 8 <= per_thread <= 64:
            out.append(("gemv", block_n, block_k, split, warps, 1))
    return out


def rel_err(config: tuple, x: torch.Tensor, w: torch.Tensor, s: torch.Tensor | None) -> float:
    ref = kernels.reference_linear(x.float(), w, s)
    out = torch.full((1, w.shape[0]), float("nan"), device="cuda", dtype=torch.bfloat16)
    kernels._launch(x, w, s, out, 16, config)
    return float((out.float() - ref).norm() / ref.norm())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=list(PRESETS))
    p.add_argument("--formats", default="bf16,int8,fp8")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--out", default="bench_gemv_sweep.json")
    a = p.parse_args()
    args = PRESETS[a.preset]
    bw = copy_bandwidth()
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20)
    configs = grid()
    report = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "copy_bandwidth_GBps": bw / 1e9, "configs": len(configs), "shapes": []}  # fmt: skip
    for name, (n, k) in shapes(args).items():
        base = torch.randn(n, k, device="cuda") * 0.02
        copies = max(2, -(-4 * l2 // (n * k)))
        x = torch.randn(copies, 1, k, device="cuda").bfloat16()
        ws_bf16 = [(base.bfloat16().clone(), None) for _ in range(copies)]
        cublas_ms = time_rotating(lambda xi, w, s: F.linear(xi, w), x, ws_bf16)
        for fmt in a.formats.split(","):
            w, s = (base.bfloat16(), None) if fmt == "bf16" else quantize_weight(base, fmt)
            ws = ws_bf16 if fmt == "bf16" else [(w.clone(), s) for _ in range(copies)]
            elem = 2 if fmt == "bf16" else 1
            moved = elem * n * k + 4 * k + 2 * n

            def pct(ms: float, moved: int = moved) -> float:
                return 100 * moved / (ms / 1000) / bw

            timed, wrong = [], []
            for config in configs + kernels.DOT_SMALL_M:
                try:
                    err = rel_err(config, x[0], w, s)
                    if not err < 2e-2:
                        wrong.append({"config": list(config), "rel_err": err})
                        continue

                    def call(xi, wi, si, c=config):
                        out = torch.empty(1, wi.shape[0], device="cuda", dtype=torch.bfloat16)
                        kernels._launch(xi, wi, si, out, 16, c)
                        return out

                    ms = time_rotating(call, x, ws)
                except Exception as e:  # noqa: BLE001 - a configuration this GPU cannot compile is skipped
                    wrong.append({"config": list(config), "error": f"{type(e).__name__}: {str(e)[:120]}"})
                    continue
                timed.append({"config": list(config), "ms": ms, "pct_bw": pct(ms), "rel_err": err})
            timed.sort(key=lambda r: r["ms"])
            dots = [r for r in timed if r["config"][0] == "dot"]
            row = {"name": name, "n": n, "k": k, "format": fmt, "cublas_bf16_ms": cublas_ms,
                   "cublas_bf16_pct_bw": 100 * (2 * n * k + 4 * k + 2 * n) / (cublas_ms / 1000) / bw,
                   "best_dot": dots[0] if dots else None, "top": timed[: a.top], "wrong": wrong}  # fmt: skip
            report["shapes"].append(row)
            best = timed[0]
            print(f"{name:<7}{fmt:<5} cuBLAS bf16 {cublas_ms * 1e3:7.1f} us ({row['cublas_bf16_pct_bw']:3.0f}%)  "
                  f"best {best['ms'] * 1e3:7.1f} us ({best['pct_bw']:3.0f}%) {best['config']}  "
                  f"best dot {dots[0]['ms'] * 1e3 if dots else float('nan'):7.1f} us  wrong {len(wrong)}",
                  flush=True)  # fmt: skip
            del ws
        del base, ws_bf16, x
        torch.cuda.empty_cache()
    Path(a.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
