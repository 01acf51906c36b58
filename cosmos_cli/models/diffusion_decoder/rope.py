"""3D rotary position embedding of the DiT self-attention (``VideoRopePosition3DEmb`` + TE's fused RoPE).

The head dimension is split into time / height / width bands (``dim_h = dim_w = head_dim // 6 * 2``, the
rest for time); each band gets its own NTK-scaled base (``10000 * ratio ** (d / (d - 2))``, the h/w
extrapolation factors of the released decoder). Angles are ``cat([t, h, w] * 2)`` per token, tokens in
t-major, then h, then w order, and are applied non-interleaved (rotate-half), as TransformerEngine's
``apply_rotary_pos_emb(..., "sbhd", fused=True)`` does.

Precision matters here: NVIDIA casts the whole network, buffers included, to bf16 before use, so in
production the frequency table, the positions and their product are rounded to bf16 before the final
``.float()``. :class:`VideoRope3D` computes in the dtype of its ``seq`` buffer, so casting the network
reproduces that rounding, and a float32 network reproduces the float32 reference exactly.
"""

from __future__ import annotations

import torch
from torch import nn


def band_dims(head_dim: int) -> tuple[int, int]:
    """``(dim_h == dim_w, dim_t)`` of the reference's split."""
    dim_h = head_dim // 6 * 2
    return dim_h, head_dim - 2 * dim_h


class VideoRope3D(nn.Module):
    """RoPE angles ``[T*H*W, 1, 1, head_dim]`` (float32) for a token grid ``T x H x W``."""

    def __init__(
        self,
        head_dim: int,
        max_len: int,
        h_extrapolation_ratio: float,
        w_extrapolation_ratio: float,
        t_extrapolation_ratio: float,
        base_fps: int = 24,
    ):
        super().__init__()
        self.head_dim = head_dim
        self.base_fps = base_fps
        self.dim_h, self.dim_t = band_dims(head_dim)
        self.h_ntk_factor = h_extrapolation_ratio ** (self.dim_h / (self.dim_h - 2))
        self.w_ntk_factor = w_extrapolation_ratio ** (self.dim_h / (self.dim_h - 2))
        self.t_ntk_factor = t_extrapolation_ratio ** (self.dim_t / (self.dim_t - 2))
        # Persistent, as in the reference: the released checkpoint holds ``pos_embedder.seq``.
        self.register_buffer("seq", torch.arange(max_len, dtype=torch.float32))

    def reset_buffers(self) -> None:
        """Refill ``seq`` after building on the meta device (it is ``arange`` in every checkpoint)."""
        self.seq = torch.arange(self.seq.numel(), dtype=self.seq.dtype, device=self.seq.device)

    def _range(self, dim: int) -> torch.Tensor:
        # The reference's non-persistent buffer: computed in float32, then cast with the network.
        return (torch.arange(0, dim, 2, device=self.seq.device)[: dim // 2].float() / dim).to(self.seq.dtype)

    def forward(self, t: int, h: int, w: int, fps: torch.Tensor | None = None) -> torch.Tensor:
        spatial, temporal = self._range(self.dim_h), self._range(self.dim_t)
        h_freqs = 1.0 / ((10000.0 * self.h_ntk_factor) ** spatial)
        w_freqs = 1.0 / ((10000.0 * self.w_ntk_factor) ** spatial)
        t_freqs = 1.0 / ((10000.0 * self.t_ntk_factor) ** temporal)
        half_h = torch.outer(self.seq[:h], h_freqs)
        half_w = torch.outer(self.seq[:w], w_freqs)
        if fps is None:
            half_t = torch.outer(self.seq[:t], t_freqs)
        else:
            half_t = torch.outer(self.seq[:t] / fps[:1].to(self.seq.dtype) * self.base_fps, t_freqs)
        grid = (t, h, w)
        parts = [
            half_t[:, None, None, :].expand(*grid, -1),
            half_h[None, :, None, :].expand(*grid, -1),
            half_w[None, None, :, :].expand(*grid, -1),
        ]
        angles = torch.cat(parts * 2, dim=-1)
        return angles.reshape(t * h * w, 1, 1, self.head_dim).float()


def rope_cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L, 1, 1, D]`` angles -> float32 ``cos``, ``sin`` ``[1, L, 1, D]`` (for ``[B, L, heads, D]``)."""
    angles = angles.reshape(1, angles.shape[0], 1, angles.shape[-1]).float()
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on ``[B, L, heads, D]``, computed in float32 and cast back (TE's fused kernel)."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
