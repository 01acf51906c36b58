"""Layers of the diffusion-decoder DiT, with the reference's module names so ``model.pt`` loads as is.

Key layout (``blocks.block{i}.blocks.{j}.…``): each transformer block is a list of AdaLN-modulated
sub-blocks (``FA``, ``CA``, ``MLP``); attention sub-blocks hold ``block.attn.to_{q,k,v,out}``, the MLP
``block.layer{1,2}``. Activations are ``[B, L, D]`` (tokens t-major, then h, then w); the reference's
``THWBD`` layout is the same computation transposed. The three TransformerEngine pieces are plain PyTorch
here with TE's numerics: RMSNorm and RoPE in float32, attention through ``F.scaled_dot_product_attention``
(flash attention on the GPU).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.models.diffusion_decoder.rope import apply_rope

LN_EPS = 1e-6
RMS_EPS = 1e-6
SDPA_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


def sdpa_backends(names: Sequence[str] | None) -> contextlib.AbstractContextManager:
    """Restrict ``F.scaled_dot_product_attention`` to ``names``, in priority order (None: PyTorch's choice).

    Must also surround the first call of a compiled block: the backend is chosen when it is traced.
    """
    if not names:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    unknown = [n for n in names if n not in SDPA_BACKENDS]
    if unknown:
        raise ValueError(f"unknown attention backends {unknown}; choose from {sorted(SDPA_BACKENDS)}")
    return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[n]) for n in names], set_priority=True)


class RMSNorm(nn.Module):
    """TE ``RMSNorm``: ``x * rsqrt(mean(x^2) + eps) * weight`` in float32, cast back."""

    def __init__(self, dim: int, eps: float = RMS_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return y.to(x.dtype)


class Timesteps(nn.Module):
    """Sinusoidal embedding of ``c_noise``: ``cat([cos, sin])`` (cos first) fp32, cast to the input dtype."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels = num_channels

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
        emb = timesteps[:, None].float() * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1).to(timesteps.dtype)


class TimestepEmbedding(nn.Module):
    """``linear_1 -> SiLU -> linear_2``.

    With AdaLN-LoRA the output is the shared ``[B, 3D]`` LoRA term and the block conditioning stays the raw
    sinusoidal embedding (the reference returns ``emb_B_D = sample``).
    """

    def __init__(self, dim: int, use_adaln_lora: bool):
        super().__init__()
        self.use_adaln_lora = use_adaln_lora
        self.linear_1 = nn.Linear(dim, dim, bias=not use_adaln_lora)
        self.activation = nn.SiLU()
        self.linear_2 = nn.Linear(dim, 3 * dim if use_adaln_lora else dim, bias=not use_adaln_lora)

    def forward(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.linear_2(self.activation(self.linear_1(sample)))
        if self.use_adaln_lora:
            return sample, emb
        return emb, None


class Patchify(nn.Module):
    """``b c (t r) (h m) (w n) -> b t h w (c r m n)`` (einops, as in PatchEmbed)."""

    def __init__(self, spatial: int, temporal: int):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        r, p = self.temporal, self.spatial
        x = x.reshape(b, c, t // r, r, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, t // r, h // p, w // p, c * r * p * p)


class PatchEmbed(nn.Module):
    def __init__(self, spatial: int, temporal: int, in_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Sequential(
            Patchify(spatial, temporal),
            nn.Linear(in_channels * spatial * spatial * temporal, out_channels, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Self- (``context_dim=None``) or cross-attention with per-head q/k RMSNorm (``qkv_norm="RRI"``)."""

    def __init__(self, dim: int, context_dim: int | None, num_heads: int):
        super().__init__()
        self.is_self_attention = context_dim is None
        self.heads = num_heads
        self.head_dim = dim // num_heads
        kv_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Sequential(nn.Linear(dim, dim, bias=False), RMSNorm(self.head_dim))
        self.to_k = nn.Sequential(nn.Linear(kv_dim, dim, bias=False), RMSNorm(self.head_dim))
        self.to_v = nn.Sequential(nn.Linear(kv_dim, dim, bias=False), nn.Identity())
        self.to_out = nn.Sequential(nn.Linear(dim, dim, bias=False))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        b, n, _ = x.shape
        source = x if context is None else context
        q = self.to_q[0](x).view(b, n, self.heads, self.head_dim)
        k = self.to_k[0](source).view(b, source.shape[1], self.heads, self.head_dim)
        v = self.to_v[0](source).view(b, source.shape[1], self.heads, self.head_dim)
        q, k = self.to_q[1](q), self.to_k[1](k)
        if self.is_self_attention and rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.to_out(self.core(q, k, v).reshape(b, n, -1))

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention over the sequence, ``[B, N, H, D]`` in and out.

        A seam, not a feature: a parallel runner may replace it on an instance (sequence parallelism
        exchanges tokens for heads around it, ``cosmos_cli.parallel.dd``) without the model knowing.
        """
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)


class VideoAttention(nn.Module):
    """Wrapper that only exists for the checkpoint's key path (``block.attn.…``)."""

    def __init__(self, dim: int, context_dim: int | None, num_heads: int):
        super().__init__()
        self.attn = Attention(dim, context_dim, num_heads)

    def forward(self, x, context, rope):
        return self.attn(x, context, rope)


class FeedForward(nn.Module):
    """``GPT2FeedForward``: ``layer2(GELU(layer1(x)))``, exact (erf) GELU, no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden, bias=False)
        self.activation = nn.GELU()
        self.layer2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.activation(self.layer1(x)))


def adaln_modulation(dim: int, chunks: int, use_adaln_lora: bool, lora_dim: int) -> nn.Sequential:
    if use_adaln_lora:
        return nn.Sequential(
            nn.SiLU(), nn.Linear(dim, lora_dim, bias=False), nn.Linear(lora_dim, chunks * dim, bias=False)
        )
    return nn.Sequential(nn.SiLU(), nn.Linear(dim, chunks * dim, bias=False))


class AdaLNSubBlock(nn.Module):
    """``DITBuildingBlock``: ``x + gate * f(LN(x) * (1 + scale) + shift)`` with AdaLN(-LoRA) modulation."""

    def __init__(
        self,
        block_type: str,
        dim: int,
        context_dim: int,
        num_heads: int,
        mlp_hidden: int,
        use_adaln_lora: bool,
        lora_dim: int,
    ):
        super().__init__()
        self.block_type = block_type
        if block_type == "fa":
            self.block = VideoAttention(dim, None, num_heads)
        elif block_type == "ca":
            self.block = VideoAttention(dim, context_dim, num_heads)
        else:
            self.block = FeedForward(dim, mlp_hidden)
        self.use_adaln_lora = use_adaln_lora
        self.adaLN_modulation = adaln_modulation(dim, 3, use_adaln_lora, lora_dim)

    def forward(self, x, emb, adaln_lora, context, rope):
        mod = self.adaLN_modulation(emb)
        if self.use_adaln_lora:
            mod = mod + adaln_lora
        shift, scale, gate = (m.unsqueeze(1) for m in mod.chunk(3, dim=1))
        h = F.layer_norm(x, (x.shape[-1],), eps=LN_EPS) * (1 + scale) + shift
        if self.block_type == "mlp":
            out = self.block(h)
        else:
            out = self.block(h, context if self.block_type == "ca" else None, rope)
        return x + gate * out


class TransformerBlock(nn.Module):
    """One ``GeneralDITTransformerBlock``: the sub-blocks of ``block_config`` in order (compiled as one)."""

    def __init__(
        self,
        block_types: list[str],
        dim: int,
        context_dim: int,
        num_heads: int,
        mlp_hidden: int,
        use_adaln_lora: bool,
        lora_dim: int,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            AdaLNSubBlock(t, dim, context_dim, num_heads, mlp_hidden, use_adaln_lora, lora_dim) for t in block_types
        )

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        adaln_lora: torch.Tensor | None,
        context: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
    ) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, emb, adaln_lora, context, (rope_cos, rope_sin))
        return x


class FinalLayer(nn.Module):
    """``LN -> modulate(shift, scale) -> Linear(D, p*p*t*C)``; the LoRA term adds its first ``2D`` entries."""

    def __init__(self, dim: int, out_features: int, use_adaln_lora: bool, lora_dim: int):
        super().__init__()
        self.dim = dim
        self.use_adaln_lora = use_adaln_lora
        self.linear = nn.Linear(dim, out_features, bias=False)
        self.adaLN_modulation = adaln_modulation(dim, 2, use_adaln_lora, lora_dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, adaln_lora: torch.Tensor | None) -> torch.Tensor:
        mod = self.adaLN_modulation(emb)
        if self.use_adaln_lora:
            mod = mod + adaln_lora[:, : 2 * self.dim]
        shift, scale = (m.unsqueeze(1) for m in mod.chunk(2, dim=1))
        return self.linear(F.layer_norm(x, (x.shape[-1],), eps=LN_EPS) * (1 + scale) + shift)
