"""A small T5 tokenizer with T5's token layout, for stand-ins of ``google-t5/t5-11b``.

A Unigram model trained with the ``tokenizers`` library on a few sentences and laid out like T5's: ``<pad>`` = 0,
``</s>`` = 1, ``<unk>`` = 2, the pieces, then ``<extra_id_99>`` ... ``<extra_id_0>``, and ``</s>`` appended to
every sequence. The ``--load-format dummy`` text encoder pads every prompt to 512 tokens, so its work does not
depend on this vocabulary; the tiny T5 checkpoint (:mod:`cosmos_cli.tiny.t5`) ships it as ``tokenizer.json``.
"""

from __future__ import annotations

import json
import string

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
