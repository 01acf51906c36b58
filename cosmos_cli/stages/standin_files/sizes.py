"""Network sizes that fit a tiny AR model: the diffusion decoder's DiT and the guardrail's models at toy width.

The ``--load-format dummy`` stages use them with a tiny AR model (CPU tests); the tiny test checkpoints
(:mod:`cosmos_cli.tiny`) are written at the same sizes. The released sizes are in
:mod:`cosmos_cli.models.released` and ``models.diffusion_decoder.config.DD_7B``.
"""

from __future__ import annotations

from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.models.released import GuardrailSizes

TINY_CONTEXT_DIM = 48
"""Width of the tiny T5 embedding (``cosmos_cli.tiny.t5.write_tiny_t5``'s default ``d_model``)."""


def tiny_dd_config(token_voc: int, context_dim: int = TINY_CONTEXT_DIM) -> DiTConfig:
    """The 7B decoder's structure at toy width: 2 blocks of 64 channels, 2 heads of 32."""
    return DiTConfig(
        name="cosmos-dd-tiny",
        model_channels=64,
        num_blocks=2,
        num_heads=2,
        adaln_lora_dim=16,
        crossattn_emb_channels=context_dim,
        token_voc=token_voc,
        token_dim=8,
    )


TINY_GUARDRAIL = GuardrailSizes(
    llama=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    siglip_vision=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    ),
    siglip_text=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
)
"""A whole guardrail folder at these sizes is written in about a second (plus RetinaFace's fixed ~105 MB)."""
