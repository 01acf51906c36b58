"""Write a tiny ``google-t5/t5-11b`` folder: a random T5 encoder-decoder and a T5 tokenizer.

Like the real repository it holds the *whole* ``T5ForConditionalGeneration`` (encoder and decoder) with
tied embeddings, in ``pytorch_model.bin`` by default, so loading only the encoder (what the pipeline does)
is exercised for real. The tokenizer is the stand-ins' small T5 tokenizer
(:mod:`cosmos_cli.stages.standin_files.t5_tokenizer`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import torch

from cosmos_cli.checkpoints import T5_DIR
from cosmos_cli.stages.standin_files.t5_tokenizer import build_tiny_t5_tokenizer
from cosmos_cli.stages.text_encoder import quiet_transformers


def write_tiny_t5(
    root: Path,
    d_model: int = 48,
    *,
    weights_format: Literal["bin", "safetensors"] = "bin",
    seed: int = 0,
) -> None:
    """Write ``root/google-t5/t5-11b/`` (config, weights, ``tokenizer.json``), replacing any old copy.

    ``d_model`` is the embedding width the AR model's cross-attention reads (1024 for T5-11B, 48 for the
    tiny golden sets). ``weights_format="bin"`` mirrors the real repository's ``pytorch_model.bin``.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tiny_t5_tokenizer()
    vocab_size = -(-tokenizer.get_vocab_size() // 128) * 128  # T5-11B: 32100 tokens, 32128 rows
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=16,
        d_ff=2 * d_model,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="relu",
        n_positions=512,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config).eval()

    target = Path(root) / T5_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if weights_format == "bin":
        # transformers 5 only writes safetensors; the real repository's file is a torch.save'd state dict.
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        torch.save(model.state_dict(), tmp / "pytorch_model.bin")
    elif weights_format == "safetensors":
        with quiet_transformers():
            model.save_pretrained(tmp)
    else:
        raise ValueError(f"weights_format must be 'bin' or 'safetensors', got {weights_format!r}")
    tokenizer.save(str(tmp / "tokenizer.json"))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
