"""The tiny AR architecture used by the bundled demo, the tests and CPU benchmarks.

Same family and code path as the 5B-Video2World model, at the golden set's sizes: a 33-frame 64x96 clip
gives a [5, 4, 6] token grid over a 1600-word FSQ vocabulary ([8, 8, 5, 5]).
"""

from __future__ import annotations

from cosmos_cli.models.config import ModelArgs

TINY_V2W = ModelArgs(
    name="cosmos-tiny-video2world",
    dim=128,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    head_dim=32,
    ffn_hidden_size=320,
    context_dim=48,
    context_len=512,
    fsq_levels=(8, 8, 5, 5),
    latent_shape=(5, 4, 6),
    video_height=64,
    video_width=96,
    default_top_p=0.9,
)
