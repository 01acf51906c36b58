#!/usr/bin/env python3
"""The decode linears alone: cuBLAS bf16 against the Triton kernel (bf16, int8, fp8 weights), per shape.

GPU (about 2 minutes on one H100; the numbers in docs/benchmarks.md):
    python scripts/bench_gemv.py --out bench_gemv.json

For every linear of the 5B model (q/k/v fused, o, gate/up fused, down, output head) and every row count
(1, 4, 8 = batch sizes; 32-128 = speculative windows): first a correctness check on fresh random inputs
against float32 (output poisoned with NaN first), then the time of 24 calls over rotating weight copies
(more bytes than L2) captured in one CUDA graph. Bandwidth counts weights + activations + outputs.
"""

from __future__ import annotations

import argparse
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


def shapes(args) -> dict[str, tuple[int, int]]:
    qkv = (args.n_heads + 2 * args.n_kv_heads) * args.head_dim
    return {
        "wqkv": (qkv, args.dim),
        "wo": (args.dim, args.n_heads * args.head_dim),
        "w13": (2 * args.ffn_hidden_size, args.dim),
        "w2": (args.dim, args.ffn_hidden_size),
        "output": (args.output_rows, args.dim),
    }


def copy_bandwidth() -> float:
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    return 2 * n * 10 / (start.elapsed_time(end) / 1000)


def graph_ms(fn, calls: int, repeats: int = 20) -> float:
    """Median ms per call of ``fn(i)`` for i in range(calls), captured once in a CUDA graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(calls):
            fn(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / calls)
    return sorted(times)[len(times) // 2]


def time_rotating(fn, x: torch.Tensor, weights: list, calls: int = 24) -> float:
    """ms per call of ``fn(x[i], w_i, s_i)`` cycling over the weight copies (so L2 never holds them)."""
    n = len(weights)
    return graph_ms(lambda i: fn(x[i % n], *weights[i % n]), calls)


def check_row(row: dict, m: int, k: int, stored: dict) -> None:
    """Fresh random input, output poisoned with NaN, against float32 on the same stored weights."""
    for fmt, (w, s) in stored.items():
        xt = torch.randn(m, k, device="cuda").bfloat16()
        ref = kernels.reference_linear(xt.float(), w, s)
        out = torch.full((m, w.shape[0]), float("nan"), device="cuda", dtype=torch.bfloat16)
        rows = kernels.block_m_for(m)
        config = kernels._config_for(xt, w, s, out, rows)  # tunes on first use
        out.fill_(float("nan"))
        kernels._launch(xt, w, s, out, rows, config)
        row[f"{fmt}_rel_err"] = float((out.float() - ref).norm() / ref.norm())
        row[f"{fmt}_nan"] = bool(out.isnan().any())
        row[f"{fmt}_config"] = list(config)


def time_row(row: dict, x, ws: dict, stored: dict) -> None:
    row["cublas_bf16_ms"] = time_rotating(lambda xi, w, s: F.linear(xi, w), x, ws["bf16"])
    for fmt in stored:
        row[f"triton_{fmt}_ms"] = time_rotating(kernels.wq_linear, x, ws[fmt])
        if fmt != "bf16":  # the prefill path: cast to bf16, cuBLAS, scale
            row[f"dequant_{fmt}_ms"] = time_rotating(kernels.reference_linear, x, ws[fmt])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="5b-video2world", choices=list(PRESETS))
    p.add_argument("--rows", default="1,4,8,32,64,128")
    p.add_argument("--formats", default="bf16,int8,fp8")
    p.add_argument("--out", default="bench_gemv.json")
    a = p.parse_args()
    args = PRESETS[a.preset]
    bw = copy_bandwidth()
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20)
    report = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "copy_bandwidth_GBps": bw / 1e9, "rows": []}  # fmt: skip
    formats = a.formats.split(",")
    for name, (n, k) in shapes(args).items():
        base = torch.randn(n, k, device="cuda") * 0.02
        stored = {"bf16": (base.bfloat16(), None)}
        for fmt in formats:
            if fmt != "bf16":
                stored[fmt] = quantize_weight(base, fmt)
        copies = max(2, -(-4 * l2 // (n * k)))  # int8 bytes of all copies >= 4x L2 (x has as many rows)
        for m in [int(r) for r in a.rows.split(",")]:
            x = torch.randn(copies, m, k, device="cuda").bfloat16()
            row = {"name": name, "n": n, "k": k, "m": m}
            ws = {fmt: [(w.clone(), s) for _ in range(copies)] for fmt, (w, s) in stored.items()}
            try:
                check_row(row, m, k, stored)
                time_row(row, x, ws, stored)
            except Exception as err:  # noqa: BLE001 - one GPU call: record and go on
                print("ERROR", name, m, type(err).__name__, err, flush=True)
                report.setdefault("errors", []).append(f"{name} M={m}: {type(err).__name__}: {err}")
                continue
            act = (m * k + m * n) * 2
            row["cublas_bf16_pct_bw"] = 100 * (2 * n * k + act) / (row["cublas_bf16_ms"] / 1000) / bw
            for fmt in stored:
                elem = 2 if fmt == "bf16" else 1
                row[f"triton_{fmt}_pct_bw"] = 100 * (elem * n * k + act) / (row[f"triton_{fmt}_ms"] / 1000) / bw
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            del ws, x
        del stored, base
        torch.cuda.empty_cache()
    report["tuned"] = kernels.tuned_configs()
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(f"\n{report['device']}  copy bw {bw / 1e9:.0f} GB/s   (ms per call; % of copy bandwidth)")
    head = f"{'linear':<8}{'M':>4}{'cuBLAS bf16':>16}"
    head += "".join(f"{'triton ' + f:>16}" for f in formats) + "".join(f"{'deq ' + f:>10}" for f in formats[1:])
    print(head + f"{'max rel err':>12}")
    for r in report["rows"]:
        line = f"{r['name']:<8}{r['m']:>4}{r['cublas_bf16_ms']:>9.4f} ({r['cublas_bf16_pct_bw']:3.0f}%)"
        line += "".join(f"{r[f'triton_{f}_ms']:>9.4f} ({r[f'triton_{f}_pct_bw']:3.0f}%)" for f in formats)
        line += "".join(f"{r[f'dequant_{f}_ms']:>10.4f}" for f in formats[1:])
        err = max(r[f"{f}_rel_err"] for f in formats)
        bad = any(r[f"{f}_nan"] for f in formats)
        print(line + f"{err:>12.1e}" + ("  NaN!" if bad else ""))


if __name__ == "__main__":
    main()
