#!/usr/bin/env python3
"""Write a complete tiny checkpoint tree in NVIDIA's layout and the real file formats; nothing is downloaded.

    python scripts/make_tiny_checkpoints.py --output .cache/tiny-checkpoints

Gives: the AR model (``model.pt`` with the released key names), the DV8x16x16 tokenizer pair
(TorchScript), T5 (``save_pretrained`` layout + a ``tokenizers`` tokenizer), the diffusion decoder with the
CV8x8x8 tokenizer, and the guardrail folder. Use with ``--ar-model-dir Cosmos-1.0-Autoregressive-Tiny-Video2World``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.stages.standin_files.dv_tokenizer import write_tiny_dv_tokenizer
from cosmos_cli.tiny.ar import write_tiny_ar
from cosmos_cli.tiny.diffusion_decoder import write_tiny_diffusion_decoder
from cosmos_cli.tiny.guardrail import write_tiny_guardrail
from cosmos_cli.tiny.t5 import write_tiny_t5


def make_tiny_checkpoints(root: Path, *, guardrail: bool = True, diffusion_decoder: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_tiny_ar(root)
    write_tiny_dv_tokenizer(root, levels=TINY_V2W.fsq_levels)
    write_tiny_t5(root, d_model=TINY_V2W.context_dim)
    if diffusion_decoder:
        write_tiny_diffusion_decoder(root, token_voc=TINY_V2W.video_vocab_size, context_dim=TINY_V2W.context_dim)
    if guardrail:
        write_tiny_guardrail(root)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(".cache/tiny-checkpoints"))
    parser.add_argument("--no-guardrail", action="store_true")
    parser.add_argument("--no-diffusion-decoder", action="store_true")
    a = parser.parse_args()
    t0 = time.perf_counter()
    make_tiny_checkpoints(a.output, guardrail=not a.no_guardrail, diffusion_decoder=not a.no_diffusion_decoder)
    print(f"tiny checkpoints written to {a.output} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
