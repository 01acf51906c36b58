"""Position tables of the Cosmos AR transformer: 3D RoPE angles and the 3D sin-cos absolute embedding.

Both follow ``shared/spec/cosmos-ar.md`` sections 1.4 and 1.5: the token grid is (T, H, W) flattened
with w fastest; Video2World sequences have one extra all-zero row in front for ``<bov>``; tables are
zero-padded to ``max_seq_len``.
"""

from __future__ import annotations

import math

import torch

from cosmos_cli.models.config import ModelArgs, YarnArgs


def _split(width: int) -> tuple[int, int, int]:
    """(t, h, w) channel widths: h and w get ``width // 6 * 2`` each, t the rest."""
    spatial = width // 6 * 2
    return width - 2 * spatial, spatial, spatial


def _yarn_scale(inv_freq: torch.Tensor, original_len: int, yarn: YarnArgs) -> torch.Tensor:
    """YaRN as the reference's V2 RoPE applies it: keep high frequencies, divide low ones by the scale."""
    hi = 2 * math.pi * yarn.yarn_beta_fast / original_len
    lo = 2 * math.pi * yarn.yarn_beta_slow / original_len
    mask = ((inv_freq - lo) / (hi - lo)).clamp(0, 1)
    return inv_freq * ((1 - mask) / yarn.yarn_scale + mask)


def _grid_positions(args: ModelArgs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, h, w) index of every video token, in sequence order."""
    t, h, w = args.latent_shape
    k = torch.arange(t * h * w)
    return k // (h * w), (k % (h * w)) // w, k % w


def _frame_into_sequence(table: torch.Tensor, args: ModelArgs) -> torch.Tensor:
    """Prepend the zero ``<bov>`` row (Video2World) and zero-pad to ``max_seq_len`` rows."""
    rows = [table.new_zeros(1, table.shape[1])] if args.has_bov else []
    rows.append(table)
    out = torch.cat(rows)
    pad = args.max_seq_len - out.shape[0]
    return torch.cat([out, out.new_zeros(pad, out.shape[1])]) if pad > 0 else out


def rope_angles(args: ModelArgs) -> torch.Tensor:
    """RoPE angles, float32 ``(max_seq_len, head_dim)``: ``[t | h | w]`` twice (rotate-half layout)."""
    dim_t, dim_h, _ = _split(args.head_dim)
    theta = args.rope_theta
    inv_t = 1.0 / theta ** (torch.arange(0, dim_t, 2)[: dim_t // 2].float() / dim_t)
    inv_s = 1.0 / theta ** (torch.arange(0, dim_h, 2)[: dim_h // 2].float() / dim_h)
    if args.yarn is not None:  # spec 1.4: the temporal axis uses original T, BOTH spatial axes original H
        inv_t = _yarn_scale(inv_t, args.yarn.original_latent_shape[0], args.yarn)
        inv_s = _yarn_scale(inv_s, args.yarn.original_latent_shape[1], args.yarn)
    inv_h = inv_w = inv_s
    pt, ph, pw = _grid_positions(args)
    half = torch.cat(
        [torch.outer(pt.float(), inv_t), torch.outer(ph.float(), inv_h), torch.outer(pw.float(), inv_w)],
        dim=-1,
    )
    return _frame_into_sequence(torch.cat([half, half], dim=-1), args)


def _sincos_1d(width: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(p*omega), cos(p*omega)]``, ``omega = 1/10000^(i/(width/2))``, float64 like the reference."""
    omega = torch.arange(width // 2, dtype=torch.float64) / (width / 2.0)
    omega = 1.0 / 10000**omega
    angles = torch.outer(positions.double(), omega)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def abs_pos_table(args: ModelArgs) -> torch.Tensor:
    """The 3D sin-cos embedding ``(max_seq_len, dim)``, rounded to bfloat16 as the reference builds it."""
    dim_t, dim_h, dim_w = _split(args.dim)
    pt, ph, pw = _grid_positions(args)
    table = torch.cat([_sincos_1d(dim_t, pt), _sincos_1d(dim_h, ph), _sincos_1d(dim_w, pw)], dim=-1)
    return _frame_into_sequence(table.to(torch.bfloat16), args)
