"""The released models' architecture sizes, where no checkpoint on disk says them (planning before a download).

Planning (``offload/plan.py``) and the stand-in stages (profiling at real sizes) read these; test fixtures
(``cosmos_cli.tiny``) import them from here, never the other way round. The AR presets are
``models.config.PRESETS`` and the diffusion decoder's is ``models.diffusion_decoder.config.DD_7B``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

T5_11B = dict(
    d_model=1024, d_ff=65536, num_layers=24, num_heads=128, d_kv=128, vocab_size=32128, feed_forward_proj="relu"
)
"""``google-t5/t5-11b``'s ``config.json`` (encoder sizes)."""


@dataclass(frozen=True)
class GuardrailSizes:
    """Architecture sizes of the guardrail's models (the RetinaFace and MLP shapes are fixed by their files)."""

    llama: dict = field(default_factory=dict)
    lora: dict = field(default_factory=dict)
    siglip_vision: dict = field(default_factory=dict)
    siglip_text: dict = field(default_factory=dict)


GUARDRAIL = GuardrailSizes(
    # meta-llama/LlamaGuard-7b = Llama-2-7B.
    llama=dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        vocab_size=32000,
        rms_norm_eps=1e-5,
    ),
    # Assumed sizes: the real adapter's rank and targets are read from its adapter_config.json at load time.
    lora=dict(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    # google/siglip-so400m-patch14-384.
    siglip_vision=dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
    ),
    siglip_text=dict(
        vocab_size=32000,
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        max_position_embeddings=64,
    ),
)
