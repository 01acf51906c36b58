#!/usr/bin/env python3
"""Seconds per video, end to end: the whole Video2World pipeline, stage by stage, cold and warm.

GPU (every stage at the released shapes with random weights, ``--load-format dummy``; with ``--files`` the
AR model and the diffusion decoder are read from real-format files written by
``scripts/write_dummy_checkpoints.py``, so loading is measured against the disk):

    python scripts/write_dummy_checkpoints.py --output /data/ck
    python scripts/bench_e2e.py --files /data/ck --out bench_e2e.json
CPU (tiny shapes, seconds; what the tests run):
    python scripts/bench_e2e.py --tiny --out /tmp/e2e.json [--files /tmp/tiny-ck]

Sections, in one process and this order (each skipped, and said so, when ``--budget-s`` would be exceeded):

- ``cold``, ``warm``, ``fp8``, ``batch`` (below), then ``disk`` / ``load`` (``--files``, last so the
  cold video finds the files out of the page cache and the loads have the GPU): the sequential read rate
  (a fresh read of the AR file after dropping it from the page cache with ``posix_fadvise(DONTNEED)``),
  then the AR model loaded from that file to the GPU without and with
  :func:`cosmos_cli.io.readahead.read_ahead`, and the diffusion decoder.
- ``cold``: the first video of the process (every stage loaded, compiled and captured on first use; the
  stages after the AR model load in the background while it decodes, ``cosmos_cli.pipeline.preload``).
- ``warm``: the next video in the same process (what ``serve`` sees).
- ``fp8``: the diffusion decoder again on the warm video's tokens with ``quantization="fp8"``: stage time,
  and the deviation of its sampler output (latent) and decoded frames from bf16 (max / mean abs, PSNR).
  The fp8 video time is composed: the warm bf16 video with its diffusion-decoder time replaced.
- ``batch``: T5 and the AR model run for ``--batch`` samples at once (the stages that batch); the per-video
  time of a batch is composed from that and the warm per-sample stages (the diffusion decoder, tokenizer,
  guardrails and mp4 writing run one sample at a time in the pipeline, so a batch does not change them).

Prints a table last; ``--out`` gets the JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path


def _set_compile_cache(args: argparse.Namespace, workdir: Path) -> str:
    """A fresh inductor cache for a cold measurement (next to the checkpoints when ``--files``)."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ or args.fresh_compile_cache:
        base = args.files if args.files else workdir
        path = Path(base) / f".inductor-cache-{os.getpid()}"
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU tests)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--files", type=Path, help="read the AR model and diffusion decoder from this tree")
    parser.add_argument("--batch", type=int, default=None, help="samples of the batch section (8; tiny 2)")
    parser.add_argument("--sections", default="disk,load,cold,warm,fp8,batch")
    parser.add_argument("--budget-s", type=float, default=1e9, help="skip sections that would end after this")
    parser.add_argument("--fresh-compile-cache", action="store_true", help="ignore a set TORCHINDUCTOR_CACHE_DIR")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache_dir = _set_compile_cache(args, workdir)

    import e2e_sections as sec  # beside this script (sys.path[0])
    import torch  # after the cache location is set

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    batch = args.batch or (2 if args.tiny else 8)
    report: dict = {
        "command": " ".join(["python", "scripts/bench_e2e.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "torch": torch.__version__,
        "shapes": "tiny" if args.tiny else "released (5B-Video2World, 7B diffusion decoder)",
        "weights": "files" if args.files else "dummy",
        "inductor_cache_dir": cache_dir,
        "skipped": [],
    }
    wanted = set(args.sections.split(","))
    # Rough seconds per section on an H100 (for --budget-s); tiny runs are quick.
    cost = {"disk": 15, "load": 40, "cold": 150, "warm": 75, "fp8": 60, "batch": 90}

    def want(name: str) -> bool:
        if name not in wanted:
            return False
        left = args.budget_s - (time.perf_counter() - t_start)
        if not args.tiny and left < cost[name]:
            report["skipped"].append(f"{name} (budget: {left:.0f} s left, needs ~{cost[name]} s)")
            return False
        return True

    bench = sec.E2EBench(device, workdir, tiny=args.tiny, files=args.files)
    sections = [
        ("cold", lambda: bench.video("cold")),
        ("warm", lambda: bench.video("warm")),
        ("fp8", lambda: bench.fp8(report["warm"])),
        ("batch", lambda: bench.batch(batch, report["warm"])),
        ("release", bench.release),  # the file sections load models of their own
        ("disk", bench.disk_rate),
        ("load", bench.load_rates),
    ]
    needs = {"fp8": "warm", "batch": "warm", "disk": "files", "load": "files"}
    for name, run in sections:
        if name == "release":
            run()
            continue
        dep = needs.get(name)
        if (dep == "files" and not args.files) or (dep == "warm" and "error" in report.get("warm", {"error": 1})):
            continue
        if not want(name):
            continue
        try:
            report[name] = run()
        except Exception as err:  # noqa: BLE001 - record it, keep what the other sections measure
            traceback.print_exc()
            report[name] = {"error": f"{type(err).__name__}: {err}"}
            report.setdefault("errors", []).append(name)
        _write(report, args.out)
    report["targets"] = sec.targets(report)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    _write(report, args.out)
    sec.print_table(report)
    return 1 if report.get("errors") else 0


def _write(report: dict, out: Path | None) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(out)


if __name__ == "__main__":
    sys.exit(main())
