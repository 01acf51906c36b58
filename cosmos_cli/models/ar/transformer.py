"""Cosmos-1.0 AR transformer as plain ``nn.Module``s, with module names equal to the checkpoint's keys.

Faithful to ``shared/spec/cosmos-ar.md`` section 1 (pre-norm Llama blocks with per-head q/k RMSNorm, 3D
RoPE, GQA, SwiGLU; Video2World adds cross-attention to the T5 context in every k-th layer and the 3D
sin-cos table added before every layer), but shaped for fast inference:

* the static KV cache and the per-sample cross-attention K/V are buffers allocated by an explicit
  :meth:`Transformer.setup_caches` call (fixed shapes make CUDA-graph capture possible);
* a prefill from position 0 uses causal SDPA over the new tokens only (flash attention, no N x N mask);
* any other step (one decode token, or K tokens of a speculative window) attends over the valid prefix
  of the static cache, up to each query's position read on the device (``cache_attention``: a
  split-K Triton kernel on GPU), with no ``repeat_interleave`` copies of the cache.

Nothing here knows about devices, compilation, tensor parallelism or sampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cosmos_cli.models.ar.cache_attention import cache_attention
from cosmos_cli.models.ar.positions import abs_pos_table, rope_angles
from cosmos_cli.models.config import ModelArgs


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 and cast back, as the reference does."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: channel i pairs with i + head_dim/2. ``x``: (B, S, H, D); cos/sin: (B|1, S, 1, D)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class KVCache(nn.Module):
    """Static self-attention cache ``(B, n_kv_heads, max_seq_len, head_dim)``, written in place."""

    def __init__(self, batch: int, n_kv_heads: int, max_seq_len: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """``k``/``v``: (B, n_kv, S, D); ``input_pos``: (S,) shared by the batch, or (B, S) per sample."""
        if input_pos.dim() == 1:
            self.k[: k.shape[0], :, input_pos] = k
            self.v[: v.shape[0], :, input_pos] = v
        else:
            rows = torch.arange(k.shape[0], device=k.device)[:, None]
            self.k[rows, :, input_pos] = k.transpose(1, 2)
            self.v[rows, :, input_pos] = v.transpose(1, 2)


class Attention(nn.Module):
    """Self-attention (RoPE, KV cache) or cross-attention (context K/V computed once per sample)."""

    def __init__(self, args: ModelArgs, cross: bool = False):
        super().__init__()
        self.cross = cross
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        kv_in = args.context_dim if cross else args.dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(kv_in, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(kv_in, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        if args.qk_norm:
            self.q_norm = RMSNorm(args.head_dim, args.norm_eps)
            self.k_norm = RMSNorm(args.head_dim, args.norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.scale = 1.0 / math.sqrt(args.head_dim)
        self.kv_cache: KVCache | None = None
        self.wqkv: nn.Linear | None = None

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """Replace wq/wk/wv by one matrix: one large GEMV per decode step instead of three small ones.

        Applied after loading (the checkpoint keeps NVIDIA's names); self-attention only, since the
        cross-attention K/V are computed once per sample.
        """
        if self.cross or self.wqkv is not None:
            return
        weight = torch.cat([self.wq.weight, self.wk.weight, self.wv.weight])
        self.wqkv = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
        self.wqkv.weight = nn.Parameter(weight, requires_grad=False)
        del self.wq, self.wk, self.wv

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], n, self.head_dim)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention K/V of a context ``(B, L, context_dim)``: (B, n_kv, L, D) each."""
        k = self._heads(self.wk(context), self.n_kv_heads)
        if self.k_norm is not None:
            k = self.k_norm(k)
        v = self._heads(self.wv(context), self.n_kv_heads)
        return k.transpose(1, 2), v.transpose(1, 2)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.wqkv is None:
            return self.wq(x), self.wk(x), self.wv(x)
        kv = self.n_kv_heads * self.head_dim
        return self.wqkv(x).split([self.n_heads * self.head_dim, kv, kv], dim=-1)

    def forward(self, x, input_pos=None, rope=None, prefill=False, context_kv=None) -> torch.Tensor:
        if self.cross:
            q = self._heads(self.wq(x), self.n_heads)
            if self.q_norm is not None:
                q = self.q_norm(q)
            k, v = context_kv  # 512 keys, all visible: SDPA (our split-K kernel won 0.3% at B=1, lost at B=8)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, scale=self.scale, enable_gqa=True)
            out = out.transpose(1, 2)
            return self.wo(out.reshape(x.shape[0], x.shape[1], -1))
        q, k, v = self._project(x)
        q, k, v = (
            self._heads(q, self.n_heads),
            self._heads(k, self.n_kv_heads),
            self._heads(v, self.n_kv_heads),
        )
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin).type_as(x), apply_rope(k, cos, sin).type_as(x)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if self.kv_cache is not None:
            self.kv_cache.update(input_pos, k, v)
        if prefill:  # from position 0: causal attention over the new tokens only, no mask tensor
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k, v, is_causal=True, scale=self.scale, enable_gqa=True
            ).transpose(1, 2)
        else:  # decode / speculative window: over the cache's valid prefix, up to each query's position
            batch = x.shape[0]
            pos = input_pos.expand(batch, -1) if input_pos.dim() == 1 else input_pos
            cache_k, cache_v = self.kv_cache.k[:batch], self.kv_cache.v[:batch]
            out = cache_attention(q, cache_k, cache_v, pos, self.scale)
        return self.wo(out.reshape(x.shape[0], x.shape[1], -1))


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.ffn_hidden_size, bias=False)
        self.w2 = nn.Linear(args.ffn_hidden_size, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.ffn_hidden_size, bias=False)
        self.w13: nn.Linear | None = None

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """One gate+up GEMV (w1 and w3 stacked) instead of two; applied after loading."""
        if self.w13 is not None:
            return
        weight = torch.cat([self.w1.weight, self.w3.weight])
        self.w13 = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
        self.w13.weight = nn.Parameter(weight, requires_grad=False)
        del self.w1, self.w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13 is None:
            gate, up = self.w1(x), self.w3(x)
        else:
            gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        if args.has_cross_attn(layer_id):
            self.cross_attention_norm = RMSNorm(args.dim, args.norm_eps)
            self.cross_attention = Attention(args, cross=True)
        else:
            self.cross_attention = None
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)
        self.context_k: torch.Tensor | None = None
        self.context_v: torch.Tensor | None = None

    def forward(self, x, input_pos, rope, prefill: bool) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), input_pos, rope, prefill)
        if self.cross_attention is not None:
            kv = (self.context_k[: x.shape[0]], self.context_v[: x.shape[0]])
            h = h + self.cross_attention(self.cross_attention_norm(h), context_kv=kv)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token embedding -> (abs-pos add, block) x n_layers -> RMSNorm -> untied output head."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.embedding_rows, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args, i) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.output_rows, bias=False)
        self.rope_cos: torch.Tensor | None = None
        self.rope_sin: torch.Tensor | None = None
        self.abs_pos: torch.Tensor | None = None
        self.max_batch_size = 0

    # ---- set-up, called by the decoder, never by forward ---------------------------------------
    def setup_tables(self, dtype: torch.dtype, device: torch.device) -> None:
        """Build the RoPE and absolute-position tables (not in the checkpoint) on ``device``."""
        angles = rope_angles(self.args).to(device)
        self.rope_cos = angles.cos().to(dtype)[None, :, None, :]
        self.rope_sin = angles.sin().to(dtype)[None, :, None, :]
        self.abs_pos = abs_pos_table(self.args).to(device=device, dtype=dtype) if self.args.abs_pos_emb else None

    def setup_caches(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> None:
        """Allocate the static KV cache for ``batch_size`` sequences of ``max_seq_len`` tokens."""
        if self.rope_cos is None or self.rope_cos.device != torch.device(device) or self.rope_cos.dtype != dtype:
            self.setup_tables(dtype, device)
        if self.max_batch_size >= batch_size and self.layers[0].attention.kv_cache is not None:
            return
        for layer in self.layers:
            attn = layer.attention
            attn.kv_cache = KVCache(batch_size, attn.n_kv_heads, self.args.max_seq_len, attn.head_dim, dtype, device)
        self.max_batch_size = batch_size

    def fuse_projections(self) -> None:
        """Fuse q/k/v and gate/up projections for fast decoding (see ``Attention.fuse_projections``).

        Changes the state-dict names, so call it after loading and before compiling; a fused model
        still produces the same logits.
        """
        for layer in self.layers:
            layer.attention.fuse_projections()
            layer.feed_forward.fuse_projections()

    def free_caches(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None
            layer.context_k = layer.context_v = None
        self.max_batch_size = 0

    @property
    def cross_attends(self) -> bool:
        """Video2World models read a text context in their cross-attention layers; base models have none."""
        return any(layer.cross_attention is not None for layer in self.layers)

    def bind_context(self, context: torch.Tensor | None, batch: int) -> None:
        """The text context of the next generation, checked against the model's family.

        The one entry point of the decoders: a cross-attending model must get a context for every
        sample of the batch (else it would silently read the previous request's), and a base model
        none (it would be ignored, so a caller passing one has mixed up models).
        """
        if not self.cross_attends:
            if context is not None:
                raise ValueError(f"{self.args.name} has no cross-attention (base family): it takes no text context")
            return
        if context is None:
            raise ValueError(f"{self.args.name} cross-attends to a text context: pass one (B, L, context_dim)")
        if context.dim() != 3 or context.shape[0] != batch or context.shape[2] != self.args.context_dim:
            raise ValueError(
                f"context of shape {tuple(context.shape)} for a batch of {batch}: "
                f"expected ({batch}, L, {self.args.context_dim})"
            )
        self.set_context(context)

    @torch.no_grad()
    def set_context(self, context: torch.Tensor) -> None:
        """Project the text context ``(B, L, context_dim)`` to cross-attention K/V once per sample.

        Writes into fixed buffers when their shape matches, so captured CUDA graphs stay valid.
        """
        for layer in self.layers:
            if layer.cross_attention is None:
                continue
            k, v = layer.cross_attention.project_context(context)
            if layer.context_k is not None and layer.context_k.shape == k.shape:
                layer.context_k.copy_(k)
                layer.context_v.copy_(v)
            else:
                layer.context_k, layer.context_v = k.contiguous(), v.contiguous()

    # ---- forward -------------------------------------------------------------------------------
    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor, *, prefill: bool = False, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (float32) for ``tokens`` (B, S) at positions ``input_pos`` ((S,) or (B, S)).

        ``prefill=True`` means the sequence starts at position 0 with an empty cache: causal SDPA over the
        new tokens only (no mask tensor). Otherwise (decode steps, speculative windows) the tokens attend
        over the whole static cache with a mask built from ``input_pos`` on the device.
        """
        x = self.tok_embeddings(tokens)
        pos = input_pos if input_pos.dim() == 2 else input_pos[None]
        rope = (self.rope_cos[0, pos], self.rope_sin[0, pos])
        for layer in self.layers:
            if self.abs_pos is not None:
                x = x + self.abs_pos[pos]
            x = layer(x, input_pos, rope, prefill)
        if last_only:
            x = x[:, -1:]
        return self.output(self.norm(x)).float()
