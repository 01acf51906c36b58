"""Write a tiny ``google-t5/t5-11b`` folder: a random T5 encoder-decoder and a T5 tokenizer.

Like the real repository it holds the *whole* ``T5ForConditionalGeneration`` (encoder and decoder) with
tied embeddings, in ``pytorch_model.bin`` by default, so loading only the encoder (what the pipeline does)
is exercised for real. The tokenizer is a Unigram model trained with the ``tokenizers`` library on a few
sentences and laid out like T5's: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, the pieces, then
``<extra_id_99>`` ... ``<extra_id_0>``, and ``</s>`` appended to every sequence.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path
from typing import Literal

import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from cosmos_cli.checkpoints import T5_DIR
from cosmos_cli.stages.text_encoder import quiet_transformers

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]
EXTRA_IDS = 100
TRAINING_SENTENCES = [
    "A video recorded from a moving vehicle's perspective, capturing roads, buildings, landscapes, and "
    "changing weather and lighting conditions.",
    "A robot arm picks up a red cube and places it on a wooden table.",
    "The camera pans slowly across a busy city street at night, with cars and people passing by.",
    "A person walks a dog along the beach at sunset while waves roll onto the sand.",
    "An autonomous car drives through a snowy forest road in the early morning.",
    "A drone flies over green fields, a river and a small village with red roofs.",
    "The robot moves the cube from the table to a box, and the camera follows the robot arm.",
    "A car drives along a road through the city, past buildings, people and other cars.",
    "The camera moves forward along the street, and the weather changes from sun to rain.",
    "A video of a kitchen: a robot opens a drawer, picks up a cup and places it on the table.",
    "Trucks and cars drive on a wide road at night, their lights moving across the video.",
    "A person rides a bicycle through a park with green trees, a river and a small bridge.",
]


def _metaspace() -> tuple[pre_tokenizers.Metaspace, decoders.Metaspace]:
    return (
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        decoders.Metaspace(replacement="▁", prepend_scheme="always"),
    )


def build_tiny_t5_tokenizer(vocab_size: int = 200) -> Tokenizer:
    """Train a small Unigram vocabulary and arrange it with T5's special and sentinel token ids."""
    trainer_tok = Tokenizer(models.Unigram())
    trainer_tok.normalizer = normalizers.NFKC()
    trainer_tok.pre_tokenizer = _metaspace()[0]
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        initial_alphabet=list(string.ascii_letters + string.digits + ".,'-!?"),
        show_progress=False,
    )
    trainer_tok.train_from_iterator(TRAINING_SENTENCES, trainer)
    pieces = [(piece, score) for piece, score in json.loads(trainer_tok.to_str())["model"]["vocab"]]
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in reversed(range(EXTRA_IDS))]

    tokenizer = Tokenizer(models.Unigram(pieces + sentinels, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer, tokenizer.decoder = _metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)]
    )
    tokenizer.add_special_tokens([AddedToken(tok, special=True) for tok in SPECIAL_TOKENS])
    tokenizer.add_special_tokens([AddedToken(tok, special=True) for tok, _ in reversed(sentinels)])
    return tokenizer


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
