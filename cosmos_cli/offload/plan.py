"""GPU memory of each offloading strategy, estimated without a GPU, and the fastest placement that fits.

Every stage has ``weights`` (bytes on the GPU while it is loaded) and ``work`` (bytes it allocates while it
runs: activations, KV cache); ``kept`` is the part of the work a resident stage keeps between uses (the AR
model's caches). In steady state every ``gpu``-placed stage is resident, so while stage ``s`` runs the GPU holds

    sum(weights + kept of the other gpu-placed stages) + weights of s + work of s

and a strategy's peak is the largest of these over the stages. Weights are exact: the networks are built
on the meta device at the configured shapes (the checkpoint's own config files where present, else the
released models' sizes), TorchScript tokenizers are counted from their files. Work is a formula per
stage (see each ``_work_*``), and two sizes are not knowable without the released files: the DV8x16x16
tokenizer and the CV8x8x8 decoder (TorchScript networks), taken as ``TOKENIZER_WEIGHTS`` from NVIDIA's
table. ``offload-profile`` measures the same quantities on a GPU; ``docs/offload.md`` compares them.

Moving a stage costs its weights over the host->device link once per batch (``cpu``), or a read from disk
(``disk``); the placement chooser minimises that cost subject to the GPU budget and free host memory.

A ``stream`` stage (:mod:`cosmos_cli.offload.streaming`) holds only its non-block weights and its two largest
blocks on the GPU while it runs (``StageSize.stream_weights``: the blocks are found on the same meta-device
builds by the same finder the placement uses), but copies every block again for each forward pass
(``passes``). Its cost is counted as if no copy overlapped compute: (non-block weights + passes x block
weights) at the host->device rate, an upper bound; so the chooser takes ``stream`` only where nothing faster
fits.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cosmos_cli.errors import NotEnoughMemory
from cosmos_cli.models.released import T5_11B
from cosmos_cli.offload.placements import HOST_HEADROOM, STAGE_NAMES, host_bytes

GIB = 2**30
GB = 1e9

H2D_BYTES_PER_S = 20e9
"""Assumed pinned host->device copy rate (PCIe 4.0 x16 achieves ~25 GB/s, 5.0 ~50); the profile measures it."""
DISK_BYTES_PER_S = 2e9
"""Assumed checkpoint read rate (NVMe, page cache cold)."""
RESERVED_FACTOR = 1.10
"""PyTorch's caching allocator holds somewhat more than the tensors need (rounding, fragmentation)."""
CUDA_CONTEXT_BYTES = int(0.75 * GIB)
"""CUDA context, cuBLAS/cuDNN workspaces: taken from the card but outside PyTorch's statistics."""
TOKENIZER_WEIGHTS = int(0.2 * GB)
"""DV8x16x16 tokenizer (and, assumed alike, the CV8x8x8 decoder): NVIDIA's table drops by 0.2 GB (29.0 ->
28.8 GB) when the tokenizer is offloaded. The released TorchScript files are counted exactly when present."""
GUARD_PROMPT_TOKENS = 2048
"""Aegis's moderation prompt is ~8,100 characters (~2,000 SentencePiece tokens) plus the user's prompt."""
T5_GROUP = 8
"""Prompts the pipeline encodes together (``VideoPipeline._stage_text_encoder``)."""
GUARD_FRAMES = 8
"""Frames per SigLIP / RetinaFace call (``BATCH_FRAMES`` of the video guardrail)."""
GUARD_FORWARDS = 3
"""LlamaGuard forward passes per prompt: the prefill and the decode steps of ``safe`` + ``</s>`` (an unsafe
verdict takes a few more)."""


BYTES = {"fp32": 4, "bf16": 2}


@dataclass(frozen=True)
class StageSize:
    name: str
    weights: int
    work: int
    basis: str
    """How ``weights`` was obtained ("shapes", "files", "NVIDIA's table")."""
    host: int = -1
    """Host memory of its pinned copy (each tensor rounded up to a power of two); -1: same as weights."""
    kept: int = 0
    """Part of ``work`` that stays allocated after the stage while it stays on the GPU (the AR model's KV
    cache and context K/V, reused by the next batch's captured decode graph)."""
    streamed: int = 0
    """Bytes of the repeated blocks ``stream`` placement brings in one at a time (0: the stage cannot stream)."""
    window: int = 0
    """Block bytes on the GPU at once under ``stream``: the two largest blocks of each block list."""
    passes: int = 1
    """Forward passes per batch; under ``stream`` each one copies every block again."""

    @property
    def host_bytes(self) -> int:
        return self.weights if self.host < 0 else self.host

    @property
    def stream_weights(self) -> int:
        """Weights on the GPU while the stage runs under ``stream``: non-block weights + the block window."""
        return self.weights - self.streamed + self.window

    @property
    def stream_moved(self) -> int:
        """Bytes a ``stream`` use copies: the non-block weights once, the blocks once per pass."""
        return self.weights - self.streamed + self.passes * self.streamed

    def as_dict(self) -> dict:
        return asdict(self) | {"host": self.host_bytes}


@dataclass(frozen=True)
class Footprint:
    """Bytes of a set of tensors on the GPU, and as pinned host copies (power-of-two blocks each)."""

    device: int = 0
    host: int = 0

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.device + other.device, self.host + other.host)


@dataclass(frozen=True)
class Blocks:
    """A module's repeated blocks as ``stream`` placement sees them: all their bytes, and the two largest."""

    streamed: int = 0
    window: int = 0

    def __add__(self, other: Blocks) -> Blocks:
        return Blocks(self.streamed + other.streamed, self.window + other.window)


@dataclass(frozen=True)
class PipelineShape:
    """What the plan needs to know about a pipeline (built from a checkpoint folder or the presets)."""

    args: object  # ModelArgs
    batch_size: int = 1
    t5_config: dict | None = field(default_factory=lambda: dict(T5_11B))
    t5_dtype: str = "bf16"
    dd_config: object | None = None  # DiTConfig
    guardrail: str = "full"
    llama_config: dict | None = None
    lora: dict | None = None
    siglip_config: dict | None = None
    dv_weights: Footprint | None = None
    cv_weights: Footprint | None = None
    ar_quantization: str = "bf16"
    """``--quantization``: int8 / fp8 store the AR linears in one byte per weight."""


# ---- per-stage sizes -----------------------------------------------------------------------------
def _footprint(tensors: Iterable[torch.Tensor], dtype_bytes: int | None) -> Footprint:
    device = host = 0
    for tensor in tensors:
        size = dtype_bytes if dtype_bytes and tensor.is_floating_point() else tensor.element_size()
        device += tensor.numel() * size
        host += host_bytes(tensor.numel() * size, pinned=True)
    return Footprint(device, host)


def module_bytes(build: Callable[[], torch.nn.Module], dtype_bytes: int | None) -> Footprint:
    """Parameters and buffers of a module, floating ones cast to ``dtype_bytes`` (None: as built).

    The module is built on the meta device: no memory, a few milliseconds even for 11B parameters.
    """
    return module_sizes(build, dtype_bytes)[0]


def module_sizes(build: Callable[[], torch.nn.Module], dtype_bytes: int | None) -> tuple[Footprint, Blocks]:
    """:func:`module_bytes` and the module's repeated blocks (:func:`~cosmos_cli.offload.streaming.find_blocks`,
    the finder ``stream`` placement uses), from one meta-device build."""
    with torch.device("meta"):
        module = build()
    footprint = _footprint(itertools.chain(module.parameters(), module.buffers()), dtype_bytes)
    return footprint, block_bytes(module, dtype_bytes)


def block_bytes(module: torch.nn.Module, dtype_bytes: int | None) -> Blocks:
    from cosmos_cli.offload.streaming import block_list, find_blocks

    container = find_blocks(module)
    if container is None:
        return Blocks()
    sizes = [
        _footprint(itertools.chain(b.parameters(), b.buffers()), dtype_bytes).device for b in block_list(container)
    ]
    return Blocks(sum(sizes), sum(sorted(sizes)[-2:]))


def torchscript_bytes(paths: Iterable[Path], dtype_bytes: int) -> Footprint:
    """Parameters and floating buffers of TorchScript files, as the stages cast them."""
    total = Footprint()
    for path in paths:
        with warnings.catch_warnings():  # NVIDIA ships TorchScript; torch 2.10+ calls it deprecated
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        total += _footprint(itertools.chain(module.parameters(), module.buffers()), dtype_bytes)
    return total


def ar_size(shape: PipelineShape) -> StageSize:
    from cosmos_cli.models.ar.transformer import Transformer

    args, batch = shape.args, shape.batch_size
    if shape.ar_quantization == "bf16":
        weights = module_bytes(lambda: Transformer(args), 2)
    else:  # one byte per linear weight + float32 scales: counted as built (quantized on the meta device)
        from cosmos_cli.quant.sizes import quantized_meta_model

        weights = module_bytes(lambda: quantized_meta_model(args, shape.ar_quantization), None)
    kept = _ar_caches(args, batch)
    return StageSize("ar_model", weights.device, _work_ar(args, batch), "shapes", weights.host, kept)


def _ar_caches(args, batch: int) -> int:
    """Static KV cache (full sequence, allocated up front) + the context's cross-attention K/V."""
    n_cross = sum(args.has_cross_attn(i) for i in range(args.n_layers))
    cross_kv = 2 * n_cross * batch * args.n_kv_heads * args.context_len * args.head_dim * 2
    return args.kv_cache_bytes(batch) + cross_kv


def _work_ar(args, batch: int) -> int:
    """The caches + the largest prefill transient (9-frame prompt: SwiGLU hidden, q/k/v, residual) + fp32
    logits of the last position."""
    prompt = int(args.has_bov) + 2 * args.tokens_per_frame
    qkv = (args.n_heads + 2 * args.n_kv_heads) * args.head_dim
    prefill = batch * prompt * (2 * args.ffn_hidden_size + qkv + 3 * args.dim) * 2
    logits = batch * args.output_rows * 4
    return _ar_caches(args, batch) + prefill + logits


def text_encoder_size(shape: PipelineShape) -> StageSize:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**shape.t5_config)
    dtype = BYTES[shape.t5_dtype]
    weights, blocks = module_sizes(lambda: T5EncoderModel(config), dtype)
    passes = -(-shape.batch_size // T5_GROUP)
    work = _work_t5(config, shape, dtype)
    return StageSize("text_encoder", weights.device, work, "shapes", weights.host, 0, *_stream(blocks, passes))


def _stream(blocks: Blocks, passes: int) -> tuple[int, int, int]:
    """``StageSize``'s ``streamed``, ``window`` and ``passes``."""
    return blocks.streamed, blocks.window, passes


def _work_t5(config, shape: PipelineShape, dtype: int) -> int:
    """Up to 8 prompts of ``context_len`` tokens: attention scores (model dtype + the fp32 softmax), the shared
    position bias, the feed-forward hidden layer twice (pre- and post-activation), the residual stream."""
    n, length, heads = min(shape.batch_size, T5_GROUP), shape.args.context_len, config.num_heads
    scores = n * heads * length * length * (2 * dtype + 4) + heads * length * length * dtype
    ffn = 2 * n * length * config.d_ff * dtype
    hidden = 4 * n * length * config.d_model * 4
    return scores + ffn + hidden


def tokenizer_size(shape: PipelineShape) -> StageSize:
    """DV8x16x16 weights; work = the 33-frame input in fp32 and bf16 (the network's own activations are
    not modelled: its architecture ships only as TorchScript)."""
    args = shape.args
    video = 3 * args.num_video_frames * args.video_height * args.video_width
    if shape.dv_weights is not None:
        return StageSize("video_tokenizer", shape.dv_weights.device, video * (4 + 2), "files", shape.dv_weights.host)
    return StageSize("video_tokenizer", TOKENIZER_WEIGHTS, video * (4 + 2), "NVIDIA's table")


def diffusion_decoder_size(shape: PipelineShape) -> StageSize:
    from cosmos_cli.models.diffusion_decoder.decoder import num_windows
    from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT
    from cosmos_cli.models.diffusion_decoder.sampler import SamplerSettings

    config = shape.dd_config
    net, blocks = module_sizes(lambda: DiffusionDecoderDiT(config), 2)
    if shape.cv_weights is not None:
        total, basis = net + shape.cv_weights, "shapes + files"
    else:
        total, basis = net + Footprint(TOKENIZER_WEIGHTS, TOKENIZER_WEIGHTS), "shapes + NVIDIA's table"
    # Conditional and unconditional run as one batch: one pass per denoiser call, per window, per sample.
    passes = shape.batch_size * num_windows(shape.args.latent_shape[0]) * SamplerSettings().x0_calls
    work = _work_dd(config, shape.args)
    return StageSize("diffusion_decoder", total.device, work, basis, total.host, 0, *_stream(blocks, passes))


def _work_dd(config, args) -> int:
    """One 8-latent-frame window, conditional and unconditional together (batch 2): the block's MLP hidden
    layer plus about six residual-width tensors (x, norm, q/k/v/attention out) per token."""
    from cosmos_cli.models.diffusion_decoder.decoder import WINDOW

    tokens = config.num_tokens(WINDOW, args.video_height // 8, args.video_width // 8)
    return 2 * tokens * (config.mlp_hidden + 6 * config.model_channels) * 2


def text_guardrail_size(shape: PipelineShape) -> StageSize | None:
    if shape.guardrail != "full":
        return None  # the blocklist runs on the CPU
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape.llama_config)
    lora = _lora_bytes(config, shape.lora)
    llama, blocks = module_sizes(lambda: LlamaForCausalLM(config), 2)
    weights = llama + Footprint(lora, lora)
    if blocks.streamed:  # the adapter lives in the decoder layers, evenly
        blocks += Blocks(lora, 2 * lora // config.num_hidden_layers)
    passes = shape.batch_size * GUARD_FORWARDS
    work = _work_llama(config)
    return StageSize("text_guardrail", weights.device, work, "shapes", weights.host, 0, *_stream(blocks, passes))


def _lora_bytes(config, lora: dict | None) -> int:
    if not lora:
        return 0
    q = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    kv = (config.num_key_value_heads or config.num_attention_heads) * (config.hidden_size // config.num_attention_heads)
    dims = {"q_proj": (config.hidden_size, q), "k_proj": (config.hidden_size, kv), "v_proj": (config.hidden_size, kv),
            "o_proj": (q, config.hidden_size)}  # fmt: skip
    per_layer = sum(lora["r"] * sum(dims[t]) for t in lora["target_modules"] if t in dims)
    return config.num_hidden_layers * per_layer * 2


def _work_llama(config) -> int:
    """The moderation prompt's KV cache and its prefill (MLP hidden x3, fp32 logits of the last position)."""
    tokens = GUARD_PROMPT_TOKENS + 100
    kv = 2 * config.num_hidden_layers * tokens * config.hidden_size * 2
    prefill = GUARD_PROMPT_TOKENS * (3 * config.intermediate_size + 4 * config.hidden_size) * 2
    return kv + prefill + config.vocab_size * 4


def video_guardrail_size(shape: PipelineShape) -> StageSize | None:
    if shape.guardrail != "full":
        return None  # the blocklist mode skips the video checks
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from cosmos_cli.guardrail.retinaface import RetinaFace
    from cosmos_cli.guardrail.video_filter import VideoSafetyModel

    config = SiglipVisionConfig(**shape.siglip_config)
    weights, blocks = Footprint(), Blocks()
    for build in (lambda: SiglipVisionModel(config), lambda: VideoSafetyModel(config.hidden_size), RetinaFace):
        footprint, found = module_sizes(build, 4)
        weights, blocks = weights + footprint, blocks + found
    passes = shape.batch_size * -(-shape.args.num_video_frames // GUARD_FRAMES)
    work = _work_retinaface(shape.args)
    return StageSize("video_guardrail", weights.device, work, "shapes", weights.host, 0, *_stream(blocks, passes))


def _work_retinaface(args) -> int:
    """RetinaFace-R50 on 8 full-size frames in fp32: the stem's 64 channels at 1/2 size and three live
    256-channel maps at 1/4 size dominate (SigLIP's 384-pixel batch is smaller)."""
    h, w = args.video_height, args.video_width
    return GUARD_FRAMES * (64 * (h // 2) * (w // 2) + 3 * 256 * (h // 4) * (w // 4)) * 4


def stage_sizes(shape: PipelineShape) -> list[StageSize]:
    """The pipeline's stages in running order, each with its weights and work bytes."""
    sizes = [
        text_guardrail_size(shape) if shape.t5_config is not None else None,
        text_encoder_size(shape) if shape.t5_config is not None else None,
        tokenizer_size(shape),
        ar_size(shape),
        diffusion_decoder_size(shape) if shape.dd_config is not None else None,
        video_guardrail_size(shape),
    ]
    return [s for s in sizes if s is not None]


# ---- building the shape from a checkpoint folder or the presets ---------------------------------
def shape_from_checkpoints(
    checkpoint_dir: Path,
    ar_model_dir: str,
    *,
    batch_size: int = 1,
    guardrail: str = "full",
    diffusion_decoder: bool | None = None,
    text_encoder_dtype: str | None = None,
    quantization: str = "bf16",
) -> PipelineShape:
    """Sizes from the checkpoint's own config files where present, the released models' sizes elsewhere.

    ``diffusion_decoder``: None means "if its files are present, else the released pipeline's default (on)"
    when the folder is empty, as for planning before a download.
    """
    from cosmos_cli.checkpoints import ARCH_FILE, CheckpointLayout
    from cosmos_cli.guardrail.layout import GuardrailLayout
    from cosmos_cli.models.diffusion_decoder.config import DD_7B, DiTConfig
    from cosmos_cli.models.released import GUARDRAIL as REAL
    from cosmos_cli.stages.ar_model import resolve_model_args

    layout = CheckpointLayout(Path(checkpoint_dir), ar_model_dir)
    args = resolve_model_args(layout.ar_dir)
    t5_config = None
    if args.cross_attn_every_k_layers:
        t5_file = layout.t5_dir / "config.json"
        t5_config = _t5_encoder_config(json.loads(t5_file.read_text())) if t5_file.exists() else dict(T5_11B)
    dd_files = layout.dd_dir / "model.pt", layout.cv_dir / "decoder.jit"
    if diffusion_decoder is None:
        diffusion_decoder = all(p.exists() for p in dd_files) or not layout.ar_dir.exists()
    dd_config = None
    if diffusion_decoder:
        arch = layout.dd_dir / ARCH_FILE
        dd_config = DiTConfig.from_json(arch) if arch.exists() else DD_7B
    guard = GuardrailLayout(layout.guardrail_dir)
    llama, siglip, lora = dict(REAL.llama), dict(REAL.siglip_vision), dict(REAL.lora)
    if guardrail == "full":
        llama = _hf_config(guard.llamaguard_snapshot(), llama)
        siglip = _hf_config(guard.siglip_snapshot(), siglip, "vision_config")
        lora = _hf_config(guard.aegis_adapter_snapshot(), lora, file="adapter_config.json")
    dtype = "bf16" if text_encoder_dtype in (None, "bf16") else "fp32"
    dv = [layout.dv_encoder, layout.dv_decoder]
    cv = [layout.cv_dir / "decoder.jit"]
    return PipelineShape(
        args=args,
        batch_size=batch_size,
        t5_config=t5_config,
        t5_dtype=dtype,
        dd_config=dd_config,
        guardrail=guardrail,
        llama_config=llama,
        lora=lora,
        siglip_config=siglip,
        dv_weights=torchscript_bytes(dv, 2) if all(p.exists() for p in dv) else None,
        cv_weights=torchscript_bytes(cv, 2) if dd_config is not None and cv[0].exists() else None,
        ar_quantization=quantization,
    )


def _t5_encoder_config(data: dict) -> dict:
    keys = ("d_model", "d_ff", "num_layers", "num_heads", "d_kv", "vocab_size", "feed_forward_proj",
            "relative_attention_num_buckets", "relative_attention_max_distance")  # fmt: skip
    return {k: data[k] for k in keys if k in data}


def _hf_config(snapshot: Path | None, default: dict, section: str | None = None, file: str = "config.json") -> dict:
    """A Hugging Face config (or one section of it) when the snapshot is downloaded, else ``default``."""
    if snapshot is None or not (snapshot / file).exists():
        return default
    data = json.loads((snapshot / file).read_text())
    data = data.get(section, {}) if section else data
    if file == "adapter_config.json":
        return {"r": data.get("r", default["r"]), "target_modules": data.get("target_modules", [])}
    known = set(default) | {"num_key_value_heads", "vocab_size", "num_channels", "rms_norm_eps"}
    return {k: v for k, v in data.items() if k in known} or default


# ---- strategies ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    name: str
    offloaded: tuple[str, ...]
    label: str
    streamed: tuple[str, ...] = ()
    """Stages on ``stream`` placement (the ``offloaded`` ones get ``where``)."""

    def policy(self, where: str = "cpu") -> dict[str, str]:
        return dict.fromkeys(self.offloaded, where) | dict.fromkeys(self.streamed, "stream")


_GUARD = ("text_guardrail", "video_guardrail")
V2W_STRATEGIES = (
    Strategy("none", (), "No offloading"),
    Strategy("guardrails", _GUARD, "Guardrails"),
    Strategy("guardrails+t5", (*_GUARD, "text_encoder"), "Guardrails & T5 encoder"),
    Strategy("guardrails+t5+dd", (*_GUARD, "text_encoder", "diffusion_decoder"),
             "Guardrails & T5 encoder & Diffusion decoder"),
    Strategy("all-but-ar", (*_GUARD, "text_encoder", "diffusion_decoder", "video_tokenizer"),
             "Guardrails & T5 encoder & Diffusion decoder & Tokenizer"),
    Strategy("all", STAGE_NAMES, "Guardrails & T5 encoder & Diffusion decoder & Tokenizer & AR model"),
)  # fmt: skip
"""NVIDIA's rows for the Video2World models (AR README), in order."""
BASE_STRATEGIES = (
    Strategy("none", (), "No offloading"),
    Strategy("guardrails", _GUARD, "Guardrails"),
    Strategy("guardrails+dd", (*_GUARD, "diffusion_decoder"), "Guardrails & Diffusion decoder"),
    Strategy("all-but-ar", (*_GUARD, "diffusion_decoder", "video_tokenizer"),
             "Guardrails & Diffusion decoder & Tokenizer"),
    Strategy("all", STAGE_NAMES, "Guardrails & Diffusion decoder & Tokenizer & AR model"),
)  # fmt: skip
"""NVIDIA's rows for the base models."""
STREAM_STRATEGIES = (
    Strategy("all-stream", ("video_tokenizer", "ar_model"),
             "Guardrails & T5 encoder & Diffusion decoder streamed, Tokenizer & AR model offloaded",
             (*_GUARD, "text_encoder", "diffusion_decoder")),
)  # fmt: skip
"""Full offload with every stage that can stream on ``stream`` (the AR model and the tokenizer ``cpu``): the
smallest peak; after NVIDIA's rows for every model (a base model has no T5 stage: its entry is unused)."""

NVIDIA_PUBLISHED = {
    "5b-video2world": ("66.2 GB", "58.7 GB", "41.3 GB", "29.0 GB", "28.8 GB", "21.1 GB"),
    "13b-video2world": ("> 80 GB", "76.6 GB", "58.0 GB", "46.9 GB", "46.7 GB", "30.9 GB"),
    "4b": ("31.3 GB", "28.9 GB", "28.5 GB", "27.3 GB", "18.7 GB"),
    "12b": ("47.5 GB", "45.2 GB", "43.1 GB", "42.9 GB", "27.4 GB"),
}
"""GPU memory per row of :data:`V2W_STRATEGIES` / :data:`BASE_STRATEGIES` (spec section 4; one H100)."""


def nvidia_strategies(args) -> tuple[Strategy, ...]:
    return V2W_STRATEGIES if args.cross_attn_every_k_layers else BASE_STRATEGIES


def strategies_for(args) -> tuple[Strategy, ...]:
    """NVIDIA's rows for this model, then :data:`STREAM_STRATEGIES`."""
    return nvidia_strategies(args) + STREAM_STRATEGIES


def published(args) -> dict[str, str]:
    """NVIDIA's figure for each strategy of this model, or {} for a model they did not publish."""
    from cosmos_cli.models.config import PRESETS

    preset = next((k for k, v in PRESETS.items() if v.name == args.name), None)
    rows = NVIDIA_PUBLISHED.get(preset, ())
    return {s.name: value for s, value in zip(nvidia_strategies(args), rows, strict=False)}


# ---- estimates -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    policy: dict[str, str]
    peak: int
    """Most bytes allocated by tensors at once (compare with measured peak allocated)."""
    peak_stage: str
    moved: int
    """Bytes brought in per batch (host copies and disk reads)."""
    seconds: float
    """Estimated bring-in time per batch at the assumed copy and read rates."""
    host: int
    """Host memory the parked (``cpu`` and ``stream``) stages take."""

    @property
    def needs(self) -> int:
        """GPU memory a card must have: the peak with the allocator's slack, plus the CUDA context."""
        return int(self.peak * RESERVED_FACTOR) + CUDA_CONTEXT_BYTES

    def fits(self, gpu_bytes: float) -> bool:
        return self.needs <= gpu_bytes


def estimate(sizes: list[StageSize], policy: dict[str, str]) -> Estimate:
    """Steady-state peak and per-batch move cost of one placement policy (stage name -> gpu|cpu|disk|stream;
    ``stream`` on a stage without blocks counts as ``cpu``, as the placement behaves)."""
    where = {s.name: policy.get(s.name, "gpu") for s in sizes}
    resident = sum(s.weights + s.kept for s in sizes if where[s.name] == "gpu")
    peak, peak_stage = 0, ""
    for s in sizes:
        # A resident stage's own weights and caches are in ``resident``; its work includes the caches.
        own = s.weights + s.kept if where[s.name] == "gpu" else 0
        weights = s.stream_weights if where[s.name] == "stream" else s.weights
        during = resident - own + weights + s.work
        if during > peak:
            peak, peak_stage = during, s.name
    # Without the diffusion decoder the tokenizer runs twice (encode, then decode): two bring-ins.
    twice = "diffusion_decoder" not in where
    moved = seconds = 0.0
    for s in sizes:
        uses = 2 if (twice and s.name == "video_tokenizer") else 1
        if where[s.name] == "cpu":
            moved += uses * s.weights
            seconds += uses * s.weights / H2D_BYTES_PER_S
        elif where[s.name] == "disk":
            moved += uses * s.weights
            seconds += uses * s.weights / DISK_BYTES_PER_S
        elif where[s.name] == "stream":
            moved += uses * s.stream_moved
            seconds += uses * s.stream_moved / H2D_BYTES_PER_S
    host = sum(s.host_bytes for s in sizes if where[s.name] in ("cpu", "stream"))
    return Estimate({s.name: where[s.name] for s in sizes}, peak, peak_stage, int(moved), seconds, host)


def choose_placements(
    sizes: list[StageSize],
    gpu_bytes: float,
    *,
    host_bytes_free: float | None = None,
    fixed: dict[str, str] | None = None,
) -> Estimate:
    """The placement with the least bring-in time per batch whose estimate fits ``gpu_bytes`` and whose
    parked stages fit in free host memory; ties go to the one with fewer stages off the GPU, then fewer
    streamed. ``stream`` is tried for the stages that have blocks to stream; it moves at least what ``cpu``
    moves, so it wins only where ``cpu`` does not fit.

    ``fixed`` pins some stages (the user's explicit flags). Raises :class:`NotEnoughMemory` when even the
    smallest placement does not fit.
    """
    from cosmos_cli.offload.placements import available_host_bytes

    fixed = fixed or {}
    host_free = available_host_bytes() if host_bytes_free is None else host_bytes_free
    names = [s.name for s in sizes]
    # The user's placements stay (``stream`` on a stage without blocks counts as ``cpu``); ``stream`` is tried
    # for the stages that have blocks.
    whole = ("gpu", "cpu", "disk")
    options = [(fixed[s.name],) if s.name in fixed else (*whole, "stream") if s.streamed else whole for s in sizes]
    best: tuple | None = None
    for combo in itertools.product(*options):
        policy = dict(zip(names, combo, strict=True))
        est = estimate(sizes, policy)
        if not est.fits(gpu_bytes) or est.host > HOST_HEADROOM * host_free:
            continue
        # At equal cost (a stage streamed in one pass moves what ``cpu`` moves) the whole-stage copy is kept.
        key = (round(est.seconds, 6), sum(w != "gpu" for w in combo), combo.count("stream"), est.peak)
        if best is None or key < best[0]:
            best = (key, est)
    if best is None:
        smallest = estimate(sizes, {s.name: "stream" if s.streamed else "disk" for s in sizes} | fixed)
        raise NotEnoughMemory(
            f"no placement fits {gpu_bytes / GIB:.1f} GiB of GPU memory: even with every stage offloaded "
            f"the {smallest.peak_stage} stage needs about {smallest.needs / GIB:.1f} GiB",
            "use a larger GPU, --batch-size 1, --guardrail blocklist or --disable-diffusion-decoder",
        )
    return best[1]


@dataclass
class PlanRow:
    strategy: str
    label: str
    estimate: Estimate
    fits: bool
    nvidia: str | None = None

    def as_dict(self) -> dict:
        est = self.estimate
        return {
            "strategy": self.strategy,
            "label": self.label,
            "policy": est.policy,
            "peak_gib": est.peak / GIB,
            "peak_stage": est.peak_stage,
            "needs_gib": est.needs / GIB,
            "fits": self.fits,
            "moved_gib_per_batch": est.moved / GIB,
            "bring_in_s_per_batch": est.seconds,
            "host_gib": est.host / GIB,
            "nvidia": self.nvidia,
        }


def comparable_to_published(shape: PipelineShape) -> bool:
    """NVIDIA measured one video with the diffusion decoder and the full guardrail (and T5 in fp32)."""
    return (
        shape.batch_size == 1
        and shape.guardrail == "full"
        and (shape.dd_config is not None or not shape.args.cross_attn_every_k_layers)
    )


def plan_rows(shape: PipelineShape, sizes: list[StageSize], gpu_bytes: float, host_bytes_free: float | None = None):
    """NVIDIA's strategies (with ``cpu`` placement), ``all-stream`` and ``auto``: the chooser's pick for
    ``gpu_bytes``."""
    args = shape.args
    nvidia = published(args) if comparable_to_published(shape) else {}
    rows = []
    for strategy in strategies_for(args):
        est = estimate(sizes, strategy.policy())
        rows.append(PlanRow(strategy.name, strategy.label, est, est.fits(gpu_bytes), nvidia.get(strategy.name)))
    try:
        best = choose_placements(sizes, gpu_bytes, host_bytes_free=host_bytes_free)
        label = "fastest placement that fits: " + (describe(best.policy) or "everything on the GPU")
        rows.append(PlanRow("auto", label, best, True))
    except NotEnoughMemory:
        pass
    return rows


def describe(policy: dict[str, str]) -> str:
    """``"text_encoder=cpu, ..."`` for the stages that are not on the GPU."""
    return ", ".join(f"{k}={v}" for k, v in policy.items() if v != "gpu")


# ---- generate --gpu-memory-budget ----------------------------------------------------------------
def pipeline_shape(pipeline, batch_size: int) -> PipelineShape:
    """The plan's view of a built :class:`~cosmos_cli.pipeline.pipeline.VideoPipeline` (nothing loaded)."""
    config = pipeline.config
    t5 = pipeline.text_encoder
    return shape_from_checkpoints(
        Path(config.checkpoint_dir),
        config.ar_model_dir,
        batch_size=batch_size,
        guardrail=config.guardrail,
        diffusion_decoder=pipeline.diffusion_decoder is not None,
        text_encoder_dtype="fp32" if t5 is not None and t5.dtype == torch.float32 else "bf16",
        quantization=getattr(config, "quantization", "bf16"),
    )


def fit_budget(pipeline, budget_gib: float, *, fixed: dict[str, str], adjust_batch: bool) -> Estimate:
    """Choose and apply the fastest placement that fits ``budget_gib`` (``fixed``: the user's explicit
    placements stay). With ``adjust_batch`` the batch shrinks until one fits (its KV cache is the part that
    grows with it). Raises :class:`NotEnoughMemory` when nothing fits at batch 1."""
    batch = max(pipeline.config.batch_size, 1)
    while True:
        sizes = stage_sizes(pipeline_shape(pipeline, batch))
        try:
            best = choose_placements(sizes, budget_gib * GIB, fixed=fixed)
            break
        except NotEnoughMemory:
            if not adjust_batch or batch == 1:
                raise
            batch = max(batch // 2, 1)
    pipeline.config.batch_size = batch
    pipeline.config.placements = dict(best.policy)
    pipeline.placements.policy.update(best.policy)
    return best
