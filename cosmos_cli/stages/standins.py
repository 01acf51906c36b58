"""Every stage with random weights at the released shapes (``--load-format dummy``), for profiling memory
and time on a GPU machine that has no checkpoints: :class:`StandInStages` is the stage factory that supplies
them to an ordinary :class:`~cosmos_cli.pipeline.pipeline.VideoPipeline`.

Each stand-in stage is the real stage class with only ``_load`` replaced: the network is built directly on
the device at the real shape with random weights (a 7B model initialises in about a second on a GPU), so
its memory, its compute, its moves between host and GPU and the pipeline code around it are the real ones.
``disk`` placement rebuilds the network instead of reading a file, so its load times are not disk times.

Two parts cannot be rebuilt because NVIDIA ships them only as TorchScript: the DV8x16x16 tokenizer and
the CV8x8x8 decoder inside the diffusion decoder. They are the small hand-made networks of
:mod:`cosmos_cli.stages.standin_files` (resolution-independent), so their weights and activations are missing from the
measurements; :mod:`cosmos_cli.offload.plan` adds NVIDIA's 0.2 GB for them. The text guardrail's LLM is
LlamaGuard-7b's shape without the ~30 MB LoRA adapter, fed a moderation prompt of the real length in tokens
and made to produce two tokens (LlamaGuard's ``safe`` + ``</s>``); the video guardrail's classifier and
face detector are biased to "safe" and "no face", so every sample completes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cosmos_cli.checkpoints import CV_TOKENIZER_DIR, DV_TOKENIZER_DIR, GUARDRAIL_DIR, CheckpointLayout
from cosmos_cli.models.building import default_dtype
from cosmos_cli.models.released import GUARDRAIL, T5_11B
from cosmos_cli.stages.ar_model import ARModelStage
from cosmos_cli.stages.base import Stage
from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
from cosmos_cli.stages.factory import StageContext, StageFactory
from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage
from cosmos_cli.stages.standin_files.blocklist import write_blocklist
from cosmos_cli.stages.standin_files.cv_tokenizer import write_tiny_cv_tokenizer
from cosmos_cli.stages.standin_files.dv_tokenizer import write_tiny_dv_tokenizer
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL, tiny_dd_config
from cosmos_cli.stages.standin_files.t5_tokenizer import build_tiny_t5_tokenizer
from cosmos_cli.stages.text_encoder import TextEncoderStage, quiet_transformers
from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage


@dataclass(frozen=True)
class StandInSizes:
    """Network sizes of the stand-ins: :func:`released_sizes` or, for CPU tests, :func:`tiny_sizes`."""

    t5: dict
    llama: dict
    siglip: dict
    guard_prompt_tokens: int
    dd: object | None = None  # DiTConfig; None: the 7B preset
    extra: dict = field(default_factory=dict)


def released_sizes() -> StandInSizes:
    from cosmos_cli.offload.plan import GUARD_PROMPT_TOKENS
    return StandInSizes(dict(T5_11B), dict(GUARDRAIL.llama), dict(GUARDRAIL.siglip_vision), GUARD_PROMPT_TOKENS)


def tiny_sizes(args) -> StandInSizes:
    """Stand-ins that fit a tiny AR model (T5 width = its context width, DD vocabulary = its vocabulary)."""
    t5 = dict(d_model=args.context_dim, d_ff=2 * args.context_dim, num_layers=2, num_heads=4, d_kv=16,
              vocab_size=256, feed_forward_proj="relu")  # fmt: skip
    llama = dict(TINY_GUARDRAIL.llama, vocab_size=64)
    dd = tiny_dd_config(args.video_vocab_size, args.context_dim)
    return StandInSizes(t5, llama, dict(TINY_GUARDRAIL.siglip_vision), guard_prompt_tokens=32, dd=dd)


def init_device(device: torch.device) -> torch.device:
    """Where to draw the random weights of a module that is to live on ``device``.

    ``stream`` placement loads stages in host memory; drawing billions of random numbers there takes minutes
    (LlamaGuard's shape alone took over 4 on 16 cores), on a GPU about a second. So host-bound stand-ins are
    initialised on the GPU when there is one and copied over; this happens at load time, before any stage's
    use is measured.
    """
    device = torch.device(device)
    return torch.device("cuda") if device.type == "cpu" and torch.cuda.is_available() else device


def build_on(device: torch.device, dtype: torch.dtype, build):
    """``build()`` with parameters created and initialised in ``dtype`` (see :func:`init_device`), placed on
    ``device``, in eval mode."""
    with torch.device(init_device(device)), default_dtype(dtype), quiet_transformers():
        module = build()
    return module.to(device).eval().requires_grad_(False)


# ---- stages ------------------------------------------------------------------------------------
class StandInTextEncoder(TextEncoderStage):
    """T5 encoder of the configured shape (T5-11B's by default) with Hugging Face's random init."""

    def __init__(self, config: dict, *, dtype: torch.dtype):
        super().__init__(Path("t5-standin"), dtype=dtype)
        self.config = config

    def require_files(self) -> None:
        """Built, not read."""

    def _load(self, device: torch.device) -> None:
        from transformers import T5Config, T5EncoderModel, T5TokenizerFast

        self._model = build_on(device, self.dtype, lambda: T5EncoderModel(T5Config(**self.config)))
        # Prompts are padded to 512 tokens, so the work does not depend on the vocabulary.
        self._tokenizer = T5TokenizerFast(tokenizer_object=build_tiny_t5_tokenizer())


class _StandInAegis:
    """LlamaGuard's shape; ``is_safe`` runs a real-length prompt through prefill plus one decode step."""

    def __init__(self, model: torch.nn.Module, prompt_tokens: int):
        self.model = model
        self.prompt_tokens = prompt_tokens

    @torch.inference_mode()
    def is_safe(self, prompt: str) -> tuple[bool, str]:
        device = next(self.model.parameters()).device
        n = self.prompt_tokens + len(prompt) // 4  # ~4 characters per SentencePiece token
        ids = torch.arange(3, 3 + n, device=device)[None] % self.model.config.vocab_size
        with quiet_transformers():
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=2,
                                min_new_tokens=2, do_sample=False, pad_token_id=0)  # fmt: skip
        return True, ""


class StandInTextGuardrail(TextGuardrailStage):
    def __init__(self, guardrail_dir: Path, mode: str, sizes: StandInSizes):
        super().__init__(guardrail_dir, mode)
        self.sizes = sizes

    def _load(self, device: torch.device) -> None:
        if self._blocklist is None:
            from cosmos_cli.guardrail.blocklist import Blocklist

            self._blocklist = Blocklist(self.layout.blocklist_dir)
        if self.mode == "full" and self._aegis is None:
            from transformers import LlamaConfig, LlamaForCausalLM

            config = LlamaConfig(**self.sizes.llama, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
            model = build_on(device, torch.bfloat16, lambda: LlamaForCausalLM(config))
            self._aegis = _StandInAegis(model, self.sizes.guard_prompt_tokens)


class StandInVideoGuardrail(VideoGuardrailStage):
    def __init__(self, guardrail_dir: Path, mode: str, sizes: StandInSizes):
        super().__init__(guardrail_dir, mode)
        self.sizes = sizes

    def _load(self, device: torch.device) -> None:
        if not self.active or self._content is not None:
            return
        from transformers import SiglipVisionConfig, SiglipVisionModel

        from cosmos_cli.guardrail.face_blur import FaceBlurFilter
        from cosmos_cli.guardrail.retinaface import RetinaFace
        from cosmos_cli.guardrail.video_filter import VideoContentFilter, VideoSafetyModel, _image_processor_class

        config = SiglipVisionConfig(**self.sizes.siglip)
        encoder = build_on(device, torch.float32, lambda: SiglipVisionModel(config))
        classifier = build_on(device, torch.float32, lambda: VideoSafetyModel(config.hidden_size))
        last = classifier.network.layers[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 10.0  # class 0: safe
        side = config.image_size
        processor = _image_processor_class()(
            do_resize=True, size={"height": side, "width": side}, resample=3, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        )  # fmt: skip
        net = build_on(device, torch.float32, RetinaFace)
        for head in net.ClassHead:  # every anchor is background: no face to pixelate
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([10.0, -10.0], device=device).repeat(2))
        self._content = VideoContentFilter(encoder, processor, classifier)
        self._faces = FaceBlurFilter(net)


class StandInDiffusionDecoder(DiffusionDecoderStage):
    """The DiT at the configured shape with random weights; the CV8x8x8 decoder is the tiny stand-in."""

    def __init__(self, layout: CheckpointLayout, config, **kwargs):
        super().__init__(layout, **kwargs)
        self.config = config

    def architecture(self):
        return self.config

    def require_files(self) -> None:
        """Built, not read (the tiny CV8x8x8 decoder is written next to the stand-ins)."""

    def _load(self, device: torch.device) -> None:
        from cosmos_cli.models.diffusion_decoder.cv_tokenizer import CVDecoder
        from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_

        with torch.device("meta"):
            net = DiffusionDecoderDiT(self.config)
        net = net.to(dtype=self.dtype).to_empty(device=init_device(device)).eval().requires_grad_(False)
        init_random_(net, torch.Generator(device=init_device(device)).manual_seed(0))
        net = net.to(device)
        self._prepare(net)
        self._cv = CVDecoder.load(self.layout.cv_dir, device, self.dtype, self.settings.sigma_data)
        self._net = net


# ---- the factory -------------------------------------------------------------------------------
def write_standin_files(root: Path, levels) -> Path:
    """The small files the stand-ins read: the stand-in DV and CV tokenizers, the guardrail's word lists."""
    root = Path(root)
    if not (root / DV_TOKENIZER_DIR / "decoder.jit").exists():
        write_tiny_dv_tokenizer(root, levels=levels)
    if not (root / CV_TOKENIZER_DIR / "mean_std.pt").exists():
        write_tiny_cv_tokenizer(root)
    blocklist = root / GUARDRAIL_DIR / "blocklist"
    if not blocklist.exists():
        write_blocklist(blocklist)
    return root


class StandInStages(StageFactory):
    """The stage factory of ``--load-format dummy``: stand-ins at the real shapes, the AR model ``dummy``.

    ``standin_dir`` receives the few small files the stand-ins read; the pipeline's ``checkpoint_dir`` only
    needs to name the AR model (the folder name selects the preset, or a ``cosmos_arch.json`` there a shape).
    ``sizes``: the stand-ins' networks; by default the released ones, or for a tiny AR model tiny ones.
    """

    def __init__(self, standin_dir: Path, sizes: StandInSizes | None = None):
        self.standin_dir = Path(standin_dir)
        self.sizes = sizes
        self._files: CheckpointLayout | None = None

    def files(self, ctx: StageContext) -> CheckpointLayout:
        """The stand-ins' sizes (released or tiny, by the AR model) and the few small files they read."""
        from cosmos_cli.models.config import PRESETS

        if self.sizes is None:
            released = any(p.name == ctx.args.name for p in PRESETS.values())
            self.sizes = released_sizes() if released else tiny_sizes(ctx.args)
        if self._files is None:
            root = write_standin_files(self.standin_dir, ctx.args.fsq_levels)
            self._files = CheckpointLayout(root, ctx.config.ar_model_dir)
        return self._files

    def ar_model(self, config, layout, *, dtype, on_gpu, model_builder=None) -> ARModelStage:
        """The real stage, with random weights at the real shape (``dummy``)."""
        return super().ar_model(dataclasses.replace(config, load_format="dummy"), layout, dtype=dtype,
                                on_gpu=on_gpu, model_builder=model_builder)  # fmt: skip

    def video_tokenizer(self, ctx: StageContext) -> Stage:
        files = self.files(ctx)
        return VideoTokenizerStage(files.dv_encoder, files.dv_decoder, levels=ctx.args.fsq_levels, dtype=ctx.dtype)

    def text_encoder(self, ctx: StageContext) -> Stage:
        self.files(ctx)
        return StandInTextEncoder(self.sizes.t5, dtype=ctx.t5_dtype)

    def diffusion_decoder(self, ctx: StageContext) -> Stage | None:
        from cosmos_cli.models.diffusion_decoder.config import DD_7B

        if ctx.config.diffusion_decoder is False:
            return None
        return StandInDiffusionDecoder(self.files(ctx), self.sizes.dd or DD_7B, dtype=ctx.dtype,
                                       compile=ctx.dd_compile, parallel=ctx.dd_parallel,
                                       quantization=ctx.config.quantization)  # fmt: skip

    def guardrails(self, ctx: StageContext, *, prompt: bool) -> tuple[Stage | None, Stage]:
        folder, mode = self.files(ctx).guardrail_dir, ctx.config.guardrail
        text = StandInTextGuardrail(folder, mode, self.sizes) if prompt else None
        return text, StandInVideoGuardrail(folder, mode, self.sizes)
