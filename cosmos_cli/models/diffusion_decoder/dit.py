"""``DiffusionDecoderGeneralDIT``: the 7B diffusion decoder's network, sized by a :class:`DiTConfig`.

Forward (spec section 2): embed the DV token indices and upsample them bilinearly to the latent grid,
concatenate ``[c_in * x_t, token embedding, padding mask]``, 2x2 patch embedding, sinusoidal timestep
embedding (+ AdaLN-LoRA MLP, + RMSNorm), the FA-CA-MLP blocks with 3D RoPE, the final AdaLN layer, and
unpatchify. The model is a plain ``nn.Module``; :func:`compile_blocks` compiles each transformer block
from outside, so identical blocks share one compiled graph and the state-dict keys stay unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.models.diffusion_decoder.blocks import (
    FinalLayer,
    PatchEmbed,
    RMSNorm,
    TimestepEmbedding,
    Timesteps,
    TransformerBlock,
)
from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.models.diffusion_decoder.rope import VideoRope3D, rope_cos_sin


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``torchvision.transforms.functional.resize`` on a tensor: float32 inside, cast back to the input."""
    if mode == "bilinear":
        out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    else:
        out = F.interpolate(x.float(), size=size, mode="nearest")
    return out.to(x.dtype)


class DiffusionDecoderDiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        c = config
        self.config = c
        d = c.model_channels
        self.x_embedder = PatchEmbed(c.patch_spatial, c.patch_temporal, c.net_in_channels, d)
        self.token_embedder = nn.Embedding(c.token_voc, c.token_dim)
        self.pos_embedder = VideoRope3D(
            c.head_dim,
            max(
                c.max_img_h // c.patch_spatial,
                c.max_img_w // c.patch_spatial,
                c.max_frames // c.patch_temporal,
            ),
            c.rope_h_extrapolation_ratio,
            c.rope_w_extrapolation_ratio,
            c.rope_t_extrapolation_ratio,
            c.base_fps,
        )
        self.t_embedder = nn.Sequential(Timesteps(d), TimestepEmbedding(d, c.use_adaln_lora))
        self.blocks = nn.ModuleDict(
            {
                f"block{i}": TransformerBlock(
                    c.block_types,
                    d,
                    c.crossattn_emb_channels,
                    c.num_heads,
                    c.mlp_hidden,
                    c.use_adaln_lora,
                    c.adaln_lora_dim,
                )
                for i in range(c.num_blocks)
            }
        )
        self.final_layer = FinalLayer(d, c.patch_out_features, c.use_adaln_lora, c.adaln_lora_dim)
        self.affline_norm = RMSNorm(d) if c.affline_emb_norm else nn.Identity()

    # ---- pieces (also what the golden check compares) ------------------------------------------
    def embed(self, x: torch.Tensor, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, C, T, H, W]`` (already ``c_in * x_t``), ``tokens`` ``[B, 1, T, H/2, W/2]`` ->
        patch embeddings ``[B, T', H', W', D]``."""
        b, _, t, h, w = x.shape
        cond = self.token_embedder(tokens[:, 0])  # B T h w Dt
        cond = cond.permute(0, 1, 4, 2, 3).reshape(b * t, -1, *cond.shape[2:4])
        cond = _resize(cond, (h, w), "bilinear")
        cond = cond.reshape(b, t, -1, h, w).transpose(1, 2)
        parts = [x, cond]
        if self.config.concat_padding_mask:
            if padding_mask is None:
                mask = x.new_zeros(b, 1, h, w)
            else:
                mask = _resize(padding_mask.to(x.dtype), (h, w), "nearest")
            parts.append(mask.unsqueeze(2).expand(b, 1, t, h, w))
        return self.x_embedder(torch.cat(parts, dim=1))

    def time_embedding(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``c_noise`` ``[B]`` -> (AdaLN input ``[B, D]``, AdaLN-LoRA term ``[B, 3D]`` or None)."""
        emb, adaln_lora = self.t_embedder(timesteps.flatten())
        return self.affline_norm(emb), adaln_lora

    def rope_angles(self, t: int, h: int, w: int, fps: torch.Tensor | None) -> torch.Tensor:
        return self.pos_embedder(t, h, w, fps)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, L, p1*p2*t*C]`` -> ``[B, C, T, H, W]``: order ``p1 p2 t C``, unlike the patch embedding."""
        c = self.config
        b = x.shape[0]
        t, h, w = grid
        p, r = c.patch_spatial, c.patch_temporal
        x = x.reshape(b, t, h, w, p, p, r, c.out_channels)
        return x.permute(0, 7, 1, 6, 2, 4, 3, 5).reshape(b, c.out_channels, t * r, h * p, w * p)

    # ---- full forward ----------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        fps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw network output ``[B, C_out, T, H, W]`` for ``x = c_in * x_t`` and ``timesteps = c_noise``."""
        x_embed = self.embed(x, tokens, padding_mask)
        b, t, h, w, d = x_embed.shape
        emb, adaln_lora = self.time_embedding(timesteps)
        rope_cos, rope_sin = rope_cos_sin(self.rope_angles(t, h, w, fps))
        hidden = x_embed.reshape(b, t * h * w, d)
        for block in self.blocks.values():
            hidden = block(hidden, emb, adaln_lora, context, rope_cos, rope_sin)
        return self.unpatchify(self.final_layer(hidden, emb, adaln_lora), (t, h, w))


def compile_blocks(net: DiffusionDecoderDiT, **options) -> None:
    """Compile every transformer block in place (``nn.Module.compile``): one graph serves all blocks."""
    for block in net.blocks.values():
        block.compile(fullgraph=True, **options)
    net.final_layer.compile(fullgraph=True, **options)


def init_random_(net: DiffusionDecoderDiT, generator: torch.Generator | None = None, std: float = 0.02) -> None:
    """Random weights for tests, tiny checkpoints and benchmarks (every parameter non-zero, norms near 1).

    Draws on the parameters' own device (``generator`` must live there too), so a 7B benchmark model
    initialises in a second on the GPU.
    """
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("to_q.1.weight", "to_k.1.weight", "affline_norm.weight")):
                param.normal_(1.0, 0.1, generator=generator)
            else:
                param.normal_(0.0, std, generator=generator)
    net.pos_embedder.reset_buffers()
