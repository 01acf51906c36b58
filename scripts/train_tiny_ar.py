#!/usr/bin/env python3
"""Train the tiny AR model on DV tokens of real clips, on CPU in minutes: a model whose outputs have structure.

    python scripts/train_tiny_ar.py --seconds 180 --out /tmp/tiny_ar_trained.pt

Random weights give near-uniform next-token distributions, which tell nothing about how speculative
decoding behaves on a real model. This script gives the tiny Video2World architecture (``TINY_V2W``: 1600
tokens, 2 layers of width 128) real video statistics on a larger latent grid, [5, 8, 12] (96 tokens per
frame; a 2-frame prompt leaves 288 tokens to generate, so windows of 32-64 are not capped by the sequence
length as they would be with the demo's 72). The shared clips are downscaled (x4 and x2), cut into 33-frame
windows, tokenised with the tiny DV tokenizer's encoder (16x16 patch means, FSQ [8, 8, 5, 5]), and every
8 x 12 crop of the token grids (and its mirror image) becomes one training sequence ``<bov> + 480 tokens``.
One clip is held out for evaluation. The text context is all zeros (unconditional).

The weights go to ``--out`` and the architecture next to them (``.json``); never commit them.
``scripts/bench_scd.py`` calls :func:`train` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from cosmos_cli.io.video import read_mp4
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.stages.standin_files.dv_network import TinyDVEncoder

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"
HOLDOUT = "input.mp4"
TRAIN_ARGS = dataclasses.replace(
    TINY_V2W, name="cosmos-tiny-trained", latent_shape=(5, 8, 12), video_height=128, video_width=192
)


@torch.no_grad()
def clip_token_grids(
    path: Path, args: ModelArgs, scales: Sequence[int] = (4, 2), stride: int = 1
) -> list[torch.Tensor]:
    """Token grids ``(windows, T', H', W')`` of every 33-frame window of a clip, one tensor per downscale."""
    frames = torch.from_numpy(read_mp4(path)).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, H, W)
    encoder = TinyDVEncoder(list(args.fsq_levels))
    length = args.num_video_frames
    grids = []
    for scale in scales:
        size = (frames.shape[2] // scale // 16 * 16, frames.shape[3] // scale // 16 * 16)
        small = F.interpolate(frames.transpose(0, 1), size=size, mode="bilinear", antialias=True)
        small = small.transpose(0, 1).clamp(-1, 1)  # (3, T, h, w)
        windows = [small[:, s : s + length] for s in range(0, small.shape[1] - length + 1, stride)]
        grids.append(torch.cat([encoder(w[None])[0] for w in windows]))
    return grids


def crop_sequences(grids: list[torch.Tensor], args: ModelArgs, mirror: bool = True) -> torch.Tensor:
    """Every ``latent_shape`` crop of the grids as a ``<bov>``-prefixed sequence ``(N, 1 + T*H*W)``."""
    t, h, w = args.latent_shape
    crops = []
    for grid in grids:
        for g in (grid, grid.flip(-1)) if mirror else (grid,):
            g = g[:, :t].unfold(2, h, 1).unfold(3, w, 1)  # (windows, t, nh, nw, h, w)
            crops.append(g.permute(0, 2, 3, 1, 4, 5).reshape(-1, t * h * w))
    tokens = torch.cat(crops)
    bov = torch.full((tokens.shape[0], 1), args.bov_token, dtype=torch.long)
    return torch.cat([bov, tokens], dim=1)


def dataset(
    args: ModelArgs = TRAIN_ARGS, clips: Path = CLIPS, holdout: str = HOLDOUT
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) sequences from the clips in ``clips``; the held-out clip is never trained on."""
    paths = sorted(clips.glob("*.mp4"))
    if not paths:
        raise FileNotFoundError(f"no clips in {clips}")
    train = [crop_sequences(clip_token_grids(p, args), args) for p in paths if p.name != holdout]
    held = crop_sequences(clip_token_grids(clips / holdout, args, scales=(4,), stride=8), args, mirror=False)
    return torch.cat(train), held


def _zero_context(model: Transformer, batch: int) -> None:
    args = model.args
    if args.cross_attn_every_k_layers:
        device = next(model.parameters()).device
        model.set_context(torch.zeros(batch, args.context_len, args.context_dim, device=device))


def train(
    sequences: torch.Tensor,
    args: ModelArgs = TRAIN_ARGS,
    *,
    seconds: float = 180.0,
    batch: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> Transformer:
    """Next-token training for a wall-clock budget; linear warm-up, cosine decay over the budget."""
    torch.manual_seed(seed)
    device = torch.device(device)
    model = Transformer(args).to(device)
    model.setup_tables(torch.float32, device)
    _zero_context(model, batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    positions = torch.arange(sequences.shape[1] - 1, device=device)
    start, step, smooth = time.perf_counter(), 0, None
    while (elapsed := time.perf_counter() - start) < seconds:
        frac = elapsed / seconds
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * frac))
        rows = torch.randint(0, sequences.shape[0], (batch,))
        seq = sequences[rows].to(device)
        logits = model(seq[:, :-1], positions, prefill=True)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        step += 1
        if step % 100 == 0:
            log(f"step {step}  {elapsed:.0f} s  loss {smooth:.3f}")
    log(f"trained {step} steps in {time.perf_counter() - start:.0f} s, loss {smooth:.3f}")
    model.free_caches()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def evaluate(model: Transformer, sequences: torch.Tensor) -> dict[str, float]:
    """Held-out cross-entropy (nats/token) and the mean entropy of the predicted distributions."""
    device = next(model.parameters()).device
    sequences = sequences.to(device)
    _zero_context(model, sequences.shape[0])
    logits = model(sequences[:, :-1], torch.arange(sequences.shape[1] - 1, device=device), prefill=True)
    model.free_caches()
    logp = logits.log_softmax(-1)
    nll = F.nll_loss(logp.reshape(-1, logp.shape[-1]), sequences[:, 1:].reshape(-1)).item()
    entropy = -(logp.exp() * logp).sum(-1).mean().item()
    return {"nll": nll, "entropy": entropy}


def save(model: Transformer, path: Path) -> None:
    """Weights with the released key names (``build_model(weights=path)``) and the architecture (.json)."""
    path = Path(path)
    torch.save({f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps(model.args.to_json(), indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--clips", type=Path, default=CLIPS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    data, held = dataset(clips=a.clips)
    print(f"{data.shape[0]} training sequences, {held.shape[0]} held-out")
    model = train(data, seconds=a.seconds, batch=a.batch, lr=a.lr, device=a.device)
    print("held-out", evaluate(model, held[:64]))
    save(model, a.out)
    print(f"weights written to {a.out}")


if __name__ == "__main__":
    main()
