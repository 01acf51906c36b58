"""Architecture hyper-parameters of the Cosmos-1.0 AR transformers, as a dataclass plus a preset table.

Values come from ``shared/spec/cosmos-ar.md`` section 1.2. Golden sets and the tiny checkpoints describe
their architecture with a JSON file in the golden ``config.json`` format; :meth:`ModelArgs.from_json`
reads that, so the same code serves the real presets and any small test model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class YarnArgs:
    """YaRN rescaling of the RoPE inverse frequencies (12B/13B only)."""

    original_latent_shape: tuple[int, int, int] = (3, 40, 64)
    yarn_scale: float = 2.0
    yarn_beta_fast: float = 4.0
    yarn_beta_slow: float = 1.0


@dataclass(frozen=True)
class ModelArgs:
    name: str = "cosmos-5b-video2world"
    family: str = "video2world"
    """"video2world" (text-conditioned, sequences start with <bov>) or "base" (video only)."""
    dim: int = 4096
    n_layers: int = 16
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    ffn_hidden_size: int = 14336
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    yarn: YarnArgs | None = None
    qk_norm: bool = True
    abs_pos_emb: bool = True
    cross_attn_every_k_layers: int = 1
    """0 means no cross-attention (the base 4B/12B models)."""
    context_dim: int = 1024
    context_len: int = 512
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    latent_shape: tuple[int, int, int] = (5, 40, 64)
    pad_to_multiple_of: int = 64
    video_height: int = 640
    video_width: int = 1024
    num_video_frames: int = 33
    default_top_p: float = 0.7

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def video_vocab_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def has_bov(self) -> bool:
        """Video2World ("text_to_video" training) sequences start with a ``<bov>`` token."""
        return self.family == "video2world"

    @property
    def bov_token(self) -> int | None:
        return self.video_vocab_size if self.has_bov else None

    @property
    def embedding_rows(self) -> int:
        if not self.has_bov:
            return self.video_vocab_size
        return _round_up(self.video_vocab_size + 1, self.pad_to_multiple_of)

    @property
    def output_rows(self) -> int:
        return self.video_vocab_size

    @property
    def tokens_per_frame(self) -> int:
        return self.latent_shape[1] * self.latent_shape[2]

    @property
    def num_video_tokens(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def max_seq_len(self) -> int:
        return _round_up(self.num_video_tokens + int(self.has_bov), self.pad_to_multiple_of)

    def has_cross_attn(self, layer: int) -> bool:
        k = self.cross_attn_every_k_layers
        return k > 0 and layer % k == 0

    def num_params(self) -> int:
        """Parameter count, computed from the shapes (used by memory planning and the benchmarks)."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        per_layer = self.dim * (q + 2 * kv) + q * self.dim + 3 * self.dim * self.ffn_hidden_size + 2 * self.dim
        per_layer += 2 * self.head_dim if self.qk_norm else 0
        cross = self.dim * q + 2 * self.context_dim * kv + q * self.dim + self.dim
        cross += 2 * self.head_dim if self.qk_norm else 0
        n_cross = sum(self.has_cross_attn(i) for i in range(self.n_layers))
        total = self.n_layers * per_layer + n_cross * cross + self.dim
        return total + (self.embedding_rows + self.output_rows) * self.dim

    def kv_cache_bytes(self, batch_size: int, bytes_per_element: int = 2) -> int:
        return 2 * self.n_layers * batch_size * self.n_kv_heads * self.max_seq_len * self.head_dim * bytes_per_element

    # ---- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_json(cls, source: str | Path | dict) -> ModelArgs:
        """Read a golden-format ``config.json`` (or our ``cosmos_arch.json``, the same format)."""
        data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if not kwargs.get("cross_attn_every_k_layers", 1):
            # Base family: the golden format writes null context sizes; nothing reads them without
            # cross-attention, so the defaults stand in (as in the 4B/12B presets).
            for key in ("context_dim", "context_len"):
                if kwargs.get(key) is None:
                    kwargs.pop(key, None)
        if data.get("yarn"):
            y = data["yarn"]
            kwargs["yarn"] = YarnArgs(
                original_latent_shape=tuple(y["original_latent_shape"]),
                yarn_scale=y["yarn_scale"],
                yarn_beta_fast=y["yarn_beta_fast"],
                yarn_beta_slow=y["yarn_beta_slow"],
            )
        for key in ("fsq_levels", "latent_shape"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        kwargs.setdefault("name", data.get("name", "custom"))
        args = cls(**kwargs)
        for key in ("embedding_rows", "output_rows", "max_seq_len", "video_vocab_size", "bov_token"):
            if key in data and data[key] != getattr(args, key):
                raise ValueError(f"{key}={data[key]} in the config disagrees with the derived {getattr(args, key)}")
        return args

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(
            embedding_rows=self.embedding_rows,
            output_rows=self.output_rows,
            max_seq_len=self.max_seq_len,
            video_vocab_size=self.video_vocab_size,
            bov_token=self.bov_token,
            rope="3d",
        )
        return data


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


_BASE_4B = dict(dim=4096, n_layers=16, n_heads=32, n_kv_heads=8, head_dim=128, ffn_hidden_size=14336)
_BASE_12B = dict(dim=5120, n_layers=40, n_heads=32, n_kv_heads=8, head_dim=128, ffn_hidden_size=14336)

PRESETS: dict[str, ModelArgs] = {
    "4b": ModelArgs(
        name="cosmos-4b",
        family="base",
        cross_attn_every_k_layers=0,
        abs_pos_emb=False,
        default_top_p=0.8,
        **_BASE_4B,
    ),
    "5b-video2world": ModelArgs(name="cosmos-5b-video2world", **_BASE_4B),
    "12b": ModelArgs(
        name="cosmos-12b",
        family="base",
        cross_attn_every_k_layers=0,
        abs_pos_emb=False,
        yarn=YarnArgs(),
        default_top_p=0.9,
        **_BASE_12B,
    ),
    "13b-video2world": ModelArgs(name="cosmos-13b-video2world", yarn=YarnArgs(), default_top_p=0.8, **_BASE_12B),
}


def preset_from_dir_name(dir_name: str) -> str | None:
    """NVIDIA detects the size from the checkpoint folder name ("...-5B-Video2World" -> 5b); so do we."""
    lower = dir_name.lower()
    for size, key in (("13b", "13b-video2world"), ("12b", "12b"), ("5b", "5b-video2world"), ("4b", "4b")):
        if f"-{size}" in lower or lower.startswith(size):
            return key
    return None
