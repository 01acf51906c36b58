"""Hyper-parameters of the diffusion-decoder DiT, with the 7B preset and the golden ``config.json`` reader.

Field names are the reference's own (``model_channels``, ``rope_h_extrapolation_ratio``, ...), so a golden
set's ``config.json`` and our ``cosmos_arch.json`` (written next to a tiny ``model.pt``) load with one
function, and every size in the network comes from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class DiTConfig:
    """``DiffusionDecoderGeneralDIT`` sizes (defaults: the released 7B decoder, spec section 2)."""

    name: str = "cosmos-dd-7b"
    model_channels: int = 4096
    num_blocks: int = 28
    num_heads: int = 32
    adaln_lora_dim: int = 256
    crossattn_emb_channels: int = 1024
    token_voc: int = 64000
    token_dim: int = 32
    in_channels: int = 16
    out_channels: int = 16
    patch_spatial: int = 2
    patch_temporal: int = 1
    mlp_ratio: float = 4.0
    max_img_h: int = 240
    max_img_w: int = 240
    max_frames: int = 128
    rope_h_extrapolation_ratio: float = 1.5
    rope_w_extrapolation_ratio: float = 1.5
    rope_t_extrapolation_ratio: float = 1.0
    block_config: str = "FA-CA-MLP"
    concat_padding_mask: bool = True
    affline_emb_norm: bool = True
    use_adaln_lora: bool = True
    base_fps: int = 24

    def __post_init__(self) -> None:
        if self.model_channels % self.num_heads:
            raise ValueError(f"model_channels {self.model_channels} is not a multiple of num_heads {self.num_heads}")
        unknown = [b for b in self.block_types if b not in ("fa", "ca", "mlp")]
        if unknown:
            raise ValueError(f"unknown block types {unknown} in block_config {self.block_config!r}")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """The reference builds attention with ``x_dim // num_heads`` per head."""
        return self.model_channels // self.num_heads

    @property
    def block_types(self) -> list[str]:
        return [b.lower() for b in self.block_config.split("-")]

    @property
    def mlp_hidden(self) -> int:
        return int(self.model_channels * self.mlp_ratio)

    @property
    def net_in_channels(self) -> int:
        """Latent + token embedding + padding-mask channels fed to the patch embedding."""
        return self.in_channels + self.token_dim + int(self.concat_padding_mask)

    @property
    def patch_in_features(self) -> int:
        return self.net_in_channels * self.patch_spatial**2 * self.patch_temporal

    @property
    def patch_out_features(self) -> int:
        return self.patch_spatial**2 * self.patch_temporal * self.out_channels

    def num_tokens(self, latent_t: int, latent_h: int, latent_w: int) -> int:
        return (latent_t // self.patch_temporal) * (latent_h // self.patch_spatial) * (latent_w // self.patch_spatial)

    def num_params(self) -> int:
        """Parameter count from the shapes (memory planning, benchmark reports)."""
        d, lora = self.model_channels, self.adaln_lora_dim
        n_chunks = 3
        mod = d * lora + lora * n_chunks * d if self.use_adaln_lora else d * n_chunks * d
        per_type = {
            "fa": 4 * d * d + 2 * self.head_dim,
            "ca": 2 * d * d + 2 * self.crossattn_emb_channels * d + 2 * self.head_dim,
            "mlp": 2 * d * self.mlp_hidden,
        }
        blocks = self.num_blocks * sum(per_type[b] + mod for b in self.block_types)
        t_embed = d * d + d * 3 * d if self.use_adaln_lora else 2 * (d * d + d)
        final_mod = d * lora + lora * 2 * d if self.use_adaln_lora else d * 2 * d
        final = final_mod + d * self.patch_out_features
        return (
            blocks
            + t_embed
            + final
            + self.patch_in_features * d
            + self.token_voc * self.token_dim
            + d * int(self.affline_emb_norm)
        )

    def forward_flops(self, latent_t: int, latent_h: int, latent_w: int, context_len: int, batch: int = 1) -> float:
        """Matmul FLOPs of one forward (2 per multiply-add; attention scores and values included)."""
        n = self.num_tokens(latent_t, latent_h, latent_w)
        d, m = self.model_channels, context_len
        per_type = {
            "fa": 2 * n * 4 * d * d + 2 * 2 * n * n * d,
            "ca": 2 * n * 2 * d * d + 2 * 2 * m * self.crossattn_emb_channels * d + 2 * 2 * n * m * d,
            "mlp": 2 * n * 2 * d * self.mlp_hidden,
        }
        blocks = self.num_blocks * sum(per_type[b] for b in self.block_types)
        edges = 2 * n * (self.patch_in_features * d + d * self.patch_out_features)
        return float(batch * (blocks + edges))

    # ---- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_json(cls, source: str | Path | dict) -> DiTConfig:
        """Read a golden-format ``config.json`` (or our ``cosmos_arch.json``); case keys are ignored."""
        data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        for key in ("head_dim", "patch_in_features"):
            if key in data and data[key] != getattr(config, key):
                raise ValueError(f"{key}={data[key]} in the config disagrees with the derived {getattr(config, key)}")
        return config

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(head_dim=self.head_dim, patch_in_features=self.patch_in_features)
        return data


DD_7B = DiTConfig()
"""The released ``Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8`` network."""
