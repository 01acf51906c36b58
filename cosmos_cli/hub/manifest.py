"""What `cosmos-cli download` fetches: presets -> Hugging Face repos -> the exact files each stage reads.

One table, so that a repo id, a file name or a size estimate is corrected in one place. File names come from
``shared/spec/cosmos-ar.md`` section 6, ``diffusion-decoder.md`` section 1 and ``guardrail.md`` section 1.
The live file list and sizes always come from the hub at download time; ``approx_bytes`` are *estimates*,
used only in the documentation, and are labelled as such wherever they appear.

Where a repo's exact file set is not certain (sharded LLM weights, safetensors vs. ``.bin``), a :class:`Pick`
lists alternatives and the first one present on the hub wins, instead of downloading both.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

from cosmos_cli.checkpoints import (
    AR_MODEL_DIRS,
    CV_TOKENIZER_DIR,
    DIFFUSION_DECODER_DIR,
    DV_TOKENIZER_DIR,
    GUARDRAIL_DIR,
    T5_DIR,
)
from cosmos_cli.errors import BadInput
from cosmos_cli.models.config import PRESETS as MODEL_PRESETS

GB = 10**9
MB = 10**6

AEGIS_CACHE_DIR = f"{GUARDRAIL_DIR}/aegis"
"""NVIDIA's ``guardrail/aegis/aegis.py`` calls ``from_pretrained(id, cache_dir=<Guardrail>/aegis)`` for both
LlamaGuard-7b and the Aegis adapter, so they live there in the Hugging Face cache layout."""
SIGLIP_CACHE_DIR = f"{GUARDRAIL_DIR}/video_content_safety_filter"
"""NVIDIA's ``video_content_safety_filter/vision_encoder.py`` loads SigLIP with this ``cache_dir``."""

Layout = Literal["dir", "hf-cache"]


@dataclass(frozen=True)
class Pick:
    """One thing a stage needs from a repo.

    ``alternatives`` is a tuple of pattern groups (exact names or ``fnmatch`` globs); the first group whose
    every pattern matches at least one hub file is taken: "safetensors if published, else .bin" is one Pick.
    """

    alternatives: tuple[tuple[str, ...], ...]
    required: bool = True
    approx_bytes: int | None = None
    """Estimate for the docs (None where nothing is published); the hub's real sizes are used at run time."""

    def describe(self) -> str:
        return " or ".join("+".join(group) for group in self.alternatives)


def exact(name: str, approx_bytes: int | None = None, required: bool = True) -> Pick:
    return Pick(((name,),), required=required, approx_bytes=approx_bytes)


def one_of(*groups: tuple[str, ...], approx_bytes: int | None = None, required: bool = True) -> Pick:
    return Pick(tuple(groups), required=required, approx_bytes=approx_bytes)


@dataclass(frozen=True)
class RepoSpec:
    """A hub repo, where it goes under the checkpoint root, and which of its files are needed."""

    repo_id: str
    dest: str
    """Folder under the checkpoint root: the files themselves ("dir") or a ``cache_dir`` ("hf-cache")."""
    picks: tuple[Pick, ...]
    layout: Layout = "dir"
    gated: bool = False
    """Needs a token and an accepted licence; access is checked before anything is downloaded."""
    purpose: str = ""

    def page_url(self, endpoint: str) -> str:
        return f"{endpoint.rstrip('/')}/{self.repo_id}"


@dataclass(frozen=True)
class Selection:
    """The files chosen from one repo's hub listing, plus the Picks that found nothing (optional ones)."""

    files: list[str] = field(default_factory=list)
    missing_required: list[str] = field(default_factory=list)


def _bf16_checkpoint_bytes(preset: str) -> int:
    """Estimate of ``model.pt`` for a preset: parameters x 2 bytes (bf16), derived, not published."""
    return MODEL_PRESETS[preset].num_params() * 2


def _ar_repo(preset: str) -> RepoSpec:
    return RepoSpec(
        repo_id=f"nvidia/{AR_MODEL_DIRS[preset]}",
        dest=AR_MODEL_DIRS[preset],
        picks=(exact("model.pt", _bf16_checkpoint_bytes(preset)), exact("config.json", 2_000)),
        purpose="AR transformer",
    )


DV_TOKENIZER = RepoSpec(
    repo_id=f"nvidia/{DV_TOKENIZER_DIR}",
    dest=DV_TOKENIZER_DIR,
    picks=(exact("encoder.jit"), exact("decoder.jit")),
    purpose="discrete video tokenizer",
)

T5 = RepoSpec(
    repo_id=T5_DIR,
    dest=T5_DIR,
    picks=(
        exact("config.json", 1_000),
        # One ~45 GB checkpoint holds encoder and decoder: the encoder alone cannot be fetched.
        # Never tf_model.h5 / flax_model.msgpack (another ~90 GB that NVIDIA's download pulls in).
        one_of(("model.safetensors",), ("pytorch_model.bin",), approx_bytes=45_200 * MB),
        # T5TokenizerFast reads tokenizer.json, or converts spiece.model: at least one, both when published.
        one_of(("tokenizer.json",), ("spiece.model",)),
        exact("tokenizer.json", 1_400_000, required=False),
        exact("spiece.model", 792_000, required=False),
        exact("tokenizer_config.json", 2_000, required=False),
        exact("special_tokens_map.json", 2_000, required=False),
        exact("generation_config.json", 200, required=False),
    ),
    purpose="T5-11B text encoder",
)

DIFFUSION_DECODER = RepoSpec(
    repo_id=f"nvidia/{DIFFUSION_DECODER_DIR}",
    dest=DIFFUSION_DECODER_DIR,
    picks=(exact("model.pt", 14 * GB), exact("aux_vars.pt"), exact("config.json", required=False)),
    purpose="7B diffusion decoder",
)

CV_TOKENIZER = RepoSpec(
    repo_id=f"nvidia/{CV_TOKENIZER_DIR}",
    dest=CV_TOKENIZER_DIR,
    picks=(exact("encoder.jit"), exact("decoder.jit"), exact("mean_std.pt")),
    purpose="continuous video tokenizer (diffusion decoder)",
)

GUARDRAIL = RepoSpec(
    repo_id=f"nvidia/{GUARDRAIL_DIR}",
    dest=GUARDRAIL_DIR,
    picks=(
        Pick((("blocklist/*",),)),
        exact("face_blur_filter/Resnet50_Final.pth", 110 * MB),
        exact("video_content_safety_filter/safety_filter.pt"),
    ),
    purpose="guardrail: blocklist, face blur, video safety classifier",
)

SIGLIP = RepoSpec(
    repo_id="google/siglip-so400m-patch14-384",
    dest=SIGLIP_CACHE_DIR,
    layout="hf-cache",
    picks=(
        exact("config.json"),
        exact("model.safetensors", 3_510 * MB),
        exact("preprocessor_config.json"),
        exact("spiece.model"),
        exact("tokenizer_config.json"),
        exact("special_tokens_map.json", required=False),
        exact("tokenizer.json", required=False),
    ),
    purpose="guardrail: SigLIP image encoder of the video safety filter",
)

LLAMA_GUARD = RepoSpec(
    repo_id="meta-llama/LlamaGuard-7b",
    dest=AEGIS_CACHE_DIR,
    layout="hf-cache",
    gated=True,
    picks=(
        exact("config.json"),
        exact("generation_config.json", required=False),
        one_of(
            ("model-*-of-*.safetensors", "model.safetensors.index.json"),
            ("model.safetensors",),
            ("pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"),
            approx_bytes=13_500 * MB,
        ),
        exact("tokenizer.model"),
        exact("tokenizer_config.json"),
        exact("tokenizer.json", required=False),
        exact("special_tokens_map.json", required=False),
    ),
    purpose="guardrail: LlamaGuard-7b base of the Aegis text filter (gated Meta repo)",
)

AEGIS_ADAPTER = RepoSpec(
    repo_id="nvidia/Aegis-AI-Content-Safety-LlamaGuard-Defensive-1.0",
    dest=AEGIS_CACHE_DIR,
    layout="hf-cache",
    picks=(
        exact("adapter_config.json"),
        one_of(("adapter_model.safetensors",), ("adapter_model.bin",)),
    ),
    purpose="guardrail: Aegis LoRA adapter of the text filter",
)

PRESET_NAMES: tuple[str, ...] = tuple(AR_MODEL_DIRS)
DEFAULT_PRESET = "5b-video2world"
ALIASES = {"5b": "5b-video2world", "13b": "13b-video2world"}
"""NVIDIA's ``--model_sizes`` spelling (4B 5B 12B 13B) maps onto our preset names."""


def resolve_preset(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in AR_MODEL_DIRS:
        raise BadInput(f"unknown model {name!r}", f"choose from: {', '.join(PRESET_NAMES)}")
    return key


def repos_for(presets: list[str], diffusion_decoder: bool = True, guardrail: bool = True) -> list[RepoSpec]:
    """Every repo the given presets need, each once, in download order (gated access is checked up front).

    Text-conditioned (Video2World) presets need T5 and the text guardrail (blocklist + Aegis on LlamaGuard);
    base 4B/12B models have no cross-attention and run only the video guardrail (spec 1.2, guardrail.md 1).
    """
    keys = [resolve_preset(p) for p in presets] or [DEFAULT_PRESET]
    text = any(MODEL_PRESETS[k].family == "video2world" for k in keys)
    repos = [_ar_repo(k) for k in keys] + [DV_TOKENIZER]
    if text:
        repos.append(T5)
    if diffusion_decoder:
        repos += [DIFFUSION_DECODER, CV_TOKENIZER]
    if guardrail:
        repos += [GUARDRAIL, SIGLIP]
        if text:
            repos += [AEGIS_ADAPTER, LLAMA_GUARD]
    unique: dict[str, RepoSpec] = {}
    for repo in repos:
        unique.setdefault(repo.repo_id, repo)
    return list(unique.values())


def matches(path: str, pattern: str) -> bool:
    """Glob match on the repo-relative path; ``*`` also crosses ``/``, as in huggingface_hub's patterns."""
    return fnmatch.fnmatchcase(path, pattern)


def select(repo: RepoSpec, hub_files: list[str]) -> Selection:
    """Apply a repo's Picks to the hub's file list (order of the hub listing is kept)."""
    chosen: set[str] = set()
    missing: list[str] = []
    for pick in repo.picks:
        for group in pick.alternatives:
            hits = [[f for f in hub_files if matches(f, pattern)] for pattern in group]
            if all(hits):
                chosen.update(f for group_hits in hits for f in group_hits)
                break
        else:
            if pick.required:
                missing.append(pick.describe())
    return Selection(files=[f for f in hub_files if f in chosen], missing_required=missing)


def check_patterns(patterns: list[str], option: str) -> None:
    """Reject the classic mistake ``.pt`` (matches only a file literally named ".pt") with a one-line fix."""
    for pattern in patterns:
        if pattern.startswith(".") and not any(c in pattern for c in "*?[/"):
            raise BadInput(f"{option} {pattern!r} is not a glob and matches no real file", f"use '*{pattern}'")
