#!/usr/bin/env python3
"""Write random-weight checkpoints in the released file formats and sizes, for measuring cold starts.

    python scripts/write_dummy_checkpoints.py --output /data/ckpt --stages ar,dd     # GPU machine, ~23 GB
    python scripts/write_dummy_checkpoints.py --output /tmp/ckpt --tiny              # CPU, tiny shapes

``ar``: ``Cosmos-1.0-Autoregressive-5B-Video2World/model.pt`` (``model.``-prefixed bf16 state dict, 9.2 GB);
``dd``: ``Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8/model.pt`` (``net.``-prefixed, 14 GB) plus the
tiny CV8x8x8 TorchScript decoder (NVIDIA ships that one only as TorchScript). T5-11B (45 GB fp32) and the
guardrail models do not fit the GPU machine's 64 GB disk beside these and are not written. Weights are drawn
on the GPU (seconds) and written with ``torch.save`` (zip format, as released), each file atomically.
Prints one JSON line per file with its size and the write rate (after ``fsync``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from cosmos_cli.checkpoints import AR_MODEL_DIRS, DIFFUSION_DECODER_DIR, CheckpointLayout
from cosmos_cli.io.atomic import atomic_path


def _save(state: dict[str, torch.Tensor], path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    rate = round(size / seconds / 1e9, 3)
    return {"file": str(path), "bytes": size, "write_s": round(seconds, 2), "write_GBps": rate}


def _host(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def write_ar(root: Path, device: torch.device) -> dict:
    from cosmos_cli.models.ar.weights import PREFIX, build_model
    from cosmos_cli.models.config import PRESETS

    args = PRESETS["5b-video2world"]
    layout = CheckpointLayout(root, AR_MODEL_DIRS["5b-video2world"])
    model = build_model(args, weights=None, dtype=torch.bfloat16, device=device)
    state = _host(model, PREFIX)
    del model
    return _save(state, layout.ar_weights)


def write_dd(root: Path, device: torch.device) -> dict:
    from cosmos_cli.models.diffusion_decoder.config import DD_7B
    from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_
    from cosmos_cli.models.diffusion_decoder.weights import NET_PREFIX
    from cosmos_cli.stages.standin_files.cv_tokenizer import write_tiny_cv_tokenizer

    with torch.device("meta"):
        net = DiffusionDecoderDiT(DD_7B)
    net = net.to(dtype=torch.bfloat16).to_empty(device=device)
    init_random_(net, torch.Generator(device=device).manual_seed(0))
    state = _host(net, NET_PREFIX)
    del net
    write_tiny_cv_tokenizer(root)
    return _save(state, root / DIFFUSION_DECODER_DIR / "model.pt")


def write_tiny(root: Path) -> list[dict]:
    """The tiny tree's AR model and diffusion decoder (same formats, toy sizes) for CPU tests."""
    from cosmos_cli.models.ar.tiny import TINY_V2W
    from cosmos_cli.tiny.ar import write_tiny_ar
    from cosmos_cli.tiny.diffusion_decoder import write_tiny_diffusion_decoder

    ar = write_tiny_ar(root)
    write_tiny_diffusion_decoder(root, token_voc=TINY_V2W.video_vocab_size, context_dim=TINY_V2W.context_dim)
    files = [Path(ar) / "model.pt", root / DIFFUSION_DECODER_DIR / "model.pt"]
    return [{"file": str(p), "bytes": p.stat().st_size} for p in files if p.exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--stages", default="ar,dd", help="comma-separated: ar, dd")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.tiny:
        rows = write_tiny(args.output)
    else:
        device = torch.device(args.device)
        writers = {"ar": write_ar, "dd": write_dd}
        rows = []
        for name in args.stages.split(","):
            if name not in writers:
                print(f"unknown stage {name!r}; use ar, dd", file=sys.stderr)
                return 2
            rows.append(writers[name](args.output, device))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
