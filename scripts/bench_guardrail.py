#!/usr/bin/env python3
"""Benchmark the guardrail stages: load time, check time and peak memory of each, at the real model shapes.

GPU (dummy weights at the real shapes: LlamaGuard-7b = Llama-2-7B in bf16 + a rank-16 LoRA, SigLIP
so400m-patch14-384 in fp32, RetinaFace-R50 in fp32; ~17 GB written to --workdir first):
    python scripts/bench_guardrail.py --out bench_guardrail.json
CPU smoke run (tiny stand-ins, seconds):
    python scripts/bench_guardrail.py --tiny --device cpu --out /tmp/bench_guardrail.json

The stand-ins come from ``cosmos_cli.tiny.guardrail`` and are loaded by the real stages from disk, so load
times include reading the files. The dummy LLM answers ``</s>`` at once (one new token, where the real
LlamaGuard answers ``safe`` + ``</s>``); its word-level tokenizer turns the prompt into about one token per
word (SentencePiece gives ~1.3x more), so ``prompt_tokens`` is printed alongside. Peak memory is
``torch.cuda.max_memory_allocated`` per phase (GPU) or the process's peak RSS so far (CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch

from cosmos_cli.models.released import GUARDRAIL
from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL
from cosmos_cli.tiny.guardrail import write_guardrail_standins

PROMPT = (
    "A video recorded from a moving vehicle's perspective, capturing roads, buildings, landscapes, and "
    "changing weather and lighting conditions. The camera moves steadily along a wide city avenue lined with "
    "trees; cyclists and pedestrians cross at a junction while a delivery van turns left, and late "
    "afternoon sunlight reflects off glass office towers as clouds drift slowly across the sky."
)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(device: torch.device, fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, seconds, peak GiB) of one call, synchronised on the GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start, _peak_gib(device)


def bench_text(folder: Path, device: torch.device, repeats: int) -> dict:
    stage = TextGuardrailStage(folder, mode="full")
    _, load_s, load_peak = measure(device, lambda: stage.load(device))
    checks = [measure(device, lambda: stage.check(PROMPT)) for _ in range(repeats)]
    aegis = stage._aegis
    from cosmos_cli.guardrail.aegis_policy import moderation_prompt

    prompt_tokens = len(aegis.tokenizer(moderation_prompt(PROMPT), add_special_tokens=False)["input_ids"])
    row = {
        "stage": "text_guardrail (blocklist + Aegis)",
        "resident_gib": stage.param_bytes() / 2**30,
        "load_s": load_s,
        "load_peak_gib": load_peak,
        "check_s": [c[1] for c in checks],
        "check_peak_gib": max(c[2] for c in checks),
        "prompt_tokens": prompt_tokens,
        "llm_answer": aegis.moderate(PROMPT)[:40],  # '' = stopped at once, as intended for the dummy
    }
    blocklist_only = TextGuardrailStage(folder, mode="blocklist")
    blocklist_only.load(device)
    row["blocklist_check_s"] = measure(device, lambda: blocklist_only.check(PROMPT))[1]
    stage.unload()
    return row


def bench_video(folder: Path, device: torch.device, frames: np.ndarray, repeats: int) -> dict:
    stage = VideoGuardrailStage(folder, mode="full")
    _, load_s, load_peak = measure(device, lambda: stage.load(device))
    classify = [measure(device, lambda: stage._content.first_unsafe(frames)) for _ in range(repeats)]
    faces = [measure(device, lambda: stage._faces.run(frames)) for _ in range(repeats)]
    runs = [measure(device, lambda: stage.run(frames)) for _ in range(repeats)]
    row = {
        "stage": "video_guardrail (SigLIP classifier + RetinaFace pixelation)",
        "frames": list(frames.shape),
        "resident_gib": stage.param_bytes() / 2**30,
        "load_s": load_s,
        "load_peak_gib": load_peak,
        "classifier_s": [c[1] for c in classify],
        "classifier_peak_gib": max(c[2] for c in classify),
        "face_blur_s": [f[1] for f in faces],
        "face_blur_peak_gib": max(f[2] for f in faces),
        "faces_pixelated": runs[-1][0][1],
        "run_s": [r[1] for r in runs],
        "run_peak_gib": max(r[2] for r in runs),
    }
    stage.unload()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny stand-ins instead of the real shapes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--stages", default="text,video", help="comma list of: text, video")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default 33, the 5B's; --tiny: 9)")
    p.add_argument("--height", type=int, default=None, help="default 640 (--tiny: 64)")
    p.add_argument("--width", type=int, default=None, help="default 1024 (--tiny: 96)")
    p.add_argument("--faces", choices=["none", "everywhere"], default="none", help="forced detections")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per check (the first includes warm-up)")
    p.add_argument("--workdir", type=Path, default=None, help="where the stand-in files go (default: a temp dir)")
    p.add_argument("--out", default="bench_guardrail.json")
    args = p.parse_args()

    device = torch.device(args.device)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    parts = (("blocklist", "aegis") if "text" in stages else ()) + (
        ("video_filter", "face_blur") if "video" in stages else ()
    )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        start = time.perf_counter()
        folder = write_guardrail_standins(
            Path(workdir),
            TINY_GUARDRAIL if args.tiny else GUARDRAIL,
            llm_answer="</s>",
            faces=args.faces,
            device=device,
            parts=parts,
        )
        write_s = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows = []
        if "text" in stages:
            rows.append(bench_text(folder, device, args.repeats))
            print(json.dumps(rows[-1]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if "video" in stages:
            rng = np.random.default_rng(0)
            shape = (args.frames or (9 if args.tiny else 33), args.height or (64 if args.tiny else 640),
                     args.width or (96 if args.tiny else 1024), 3)  # fmt: skip
            frames = rng.integers(0, 256, size=shape, dtype=np.uint8)
            rows.append(bench_video(folder, device, frames, args.repeats))
            print(json.dumps(rows[-1]), flush=True)

    report = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "shapes": "tiny" if args.tiny else "real",
        "write_standins_s": write_s,
        "stages": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    for row in rows:
        timings = {k: v for k, v in row.items() if k.endswith("_s")}
        peaks = {k: round(v, 2) for k, v in row.items() if k.endswith("_gib")}
        print(f"{row['stage']}: {json.dumps(timings)} {json.dumps(peaks)}")


if __name__ == "__main__":
    main()
