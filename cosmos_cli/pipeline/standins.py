"""The whole pipeline with random weights at the released shapes (``--load-format dummy``), for profiling
memory and time on a GPU machine that has no checkpoints.

Each stand-in stage is the real stage class with only ``load`` replaced: the network is built directly on
the device at the real shape with random weights (a 7B model initialises in about a second on a GPU), so
its memory, its compute, its moves between host and GPU and the pipeline code around it are the real ones.
``disk`` placement rebuilds the network instead of reading a file, so its load times are not disk times.

Two parts cannot be rebuilt because NVIDIA ships them only as TorchScript: the DV8x16x16 tokenizer and
the CV8x8x8 decoder inside the diffusion decoder. They are the tiny hand-made networks of
``cosmos_cli.tiny`` (resolution-independent), so their weights and activations are missing from the
measurements; :mod:`cosmos_cli.offload.plan` adds NVIDIA's 0.2 GB for them. The text guardrail's LLM is
LlamaGuard-7b's shape without the ~30 MB LoRA adapter, fed a moderation prompt of the real length in tokens
and made to produce two tokens (LlamaGuard's ``safe`` + ``</s>``); the video guardrail's classifier and
face detector are biased to "safe" and "no face", so every sample completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cosmos_cli.checkpoints import CV_TOKENIZER_DIR, DV_TOKENIZER_DIR, GUARDRAIL_DIR, CheckpointLayout
from cosmos_cli.models.building import default_dtype
from cosmos_cli.models.released import GUARDRAIL, T5_11B
from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline
from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage
from cosmos_cli.stages.text_encoder import TextEncoderStage, quiet_transformers


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
    from cosmos_cli.tiny.diffusion_decoder import tiny_dd_config
    from cosmos_cli.tiny.guardrail import TINY

    t5 = dict(d_model=args.context_dim, d_ff=2 * args.context_dim, num_layers=2, num_heads=4, d_kv=16,
              vocab_size=256, feed_forward_proj="relu")  # fmt: skip
    llama = dict(TINY.llama, vocab_size=64)
    dd = tiny_dd_config(args.video_vocab_size, args.context_dim)
    return StandInSizes(t5, llama, dict(TINY.siglip_vision), guard_prompt_tokens=32, dd=dd)


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

    def load(self, device: torch.device) -> None:
        if self.loaded:
            self.to(device)
            return
        from transformers import T5Config, T5EncoderModel, T5TokenizerFast

        from cosmos_cli.tiny.t5 import build_tiny_t5_tokenizer

        device = torch.device(device)
        self._model = build_on(device, self.dtype, lambda: T5EncoderModel(T5Config(**self.config)))
        # Prompts are padded to 512 tokens, so the work does not depend on the vocabulary.
        self._tokenizer = T5TokenizerFast(tokenizer_object=build_tiny_t5_tokenizer())
        self.device = device


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

    def load(self, device: torch.device) -> None:
        if self._blocklist is None:
            from cosmos_cli.guardrail.blocklist import Blocklist

            self._blocklist = Blocklist(self.layout.blocklist_dir)
        if self.mode == "full" and self._aegis is None:
            from transformers import LlamaConfig, LlamaForCausalLM

            config = LlamaConfig(**self.sizes.llama, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
            model = build_on(torch.device(device), torch.bfloat16, lambda: LlamaForCausalLM(config))
            self._aegis = _StandInAegis(model, self.sizes.guard_prompt_tokens)


class StandInVideoGuardrail(VideoGuardrailStage):
    def __init__(self, guardrail_dir: Path, mode: str, sizes: StandInSizes):
        super().__init__(guardrail_dir, mode)
        self.sizes = sizes

    def load(self, device: torch.device) -> None:
        if not self.active or self._content is not None:
            return
        from transformers import SiglipVisionConfig, SiglipVisionModel

        from cosmos_cli.guardrail.face_blur import FaceBlurFilter
        from cosmos_cli.guardrail.retinaface import RetinaFace
        from cosmos_cli.guardrail.video_filter import VideoContentFilter, VideoSafetyModel, _image_processor_class

        device = torch.device(device)
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

    def load(self, device: torch.device) -> None:
        device = torch.device(device)
        if self.loaded:
            self.to(device)
            return
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
        self.device = device


# ---- the pipeline ------------------------------------------------------------------------------
def write_standin_files(root: Path, levels) -> Path:
    """The small files the stand-ins read: tiny DV and CV tokenizers, the guardrail's word lists."""
    from cosmos_cli.tiny.diffusion_decoder import write_tiny_cv_tokenizer
    from cosmos_cli.tiny.guardrail import write_blocklist
    from cosmos_cli.tiny.video_tokenizer import write_tiny_dv_tokenizer

    root = Path(root)
    if not (root / DV_TOKENIZER_DIR / "decoder.jit").exists():
        write_tiny_dv_tokenizer(root, levels=levels)
    if not (root / CV_TOKENIZER_DIR / "mean_std.pt").exists():
        write_tiny_cv_tokenizer(root)
    blocklist = root / GUARDRAIL_DIR / "blocklist"
    if not blocklist.exists():
        write_blocklist(blocklist)
    return root


class StandInPipeline(VideoPipeline):
    """:class:`VideoPipeline` whose stages are stand-ins at the real shapes (the AR model: ``dummy`` load).

    ``standin_dir`` receives the few small files the stand-ins read; ``config.checkpoint_dir`` only needs
    to name the AR model (the folder name selects the preset, or a ``cosmos_arch.json`` there a shape).
    """

    def __init__(self, config: PipelineConfig, standin_dir: Path, sizes: StandInSizes | None = None, **kwargs):
        """``kwargs``: :class:`VideoPipeline`'s (``model_builder`` / ``link`` for tensor parallelism)."""
        self.standin_dir = Path(standin_dir)
        self.sizes = sizes
        config.load_format = "dummy"
        super().__init__(config, **kwargs)

    def _standin_files(self) -> CheckpointLayout:
        """The stand-ins' sizes (released or tiny, by the AR model) and the few small files they read."""
        from cosmos_cli.models.config import PRESETS

        if self.sizes is None:
            released = any(p.name == self.args.name for p in PRESETS.values())
            self.sizes = released_sizes() if released else tiny_sizes(self.args)
        if getattr(self, "_files", None) is None:
            root = write_standin_files(self.standin_dir, self.args.fsq_levels)
            self._files = CheckpointLayout(root, self.config.ar_model_dir)
        return self._files

    def _build_diffusion_decoder(self, on_gpu: bool):
        from cosmos_cli.models.diffusion_decoder.config import DD_7B

        cfg = self.config
        if cfg.diffusion_decoder is False:
            return None
        return StandInDiffusionDecoder(
            self._standin_files(), self.sizes.dd or DD_7B, dtype=self.dtype,
            compile=cfg.compile and on_gpu and self.dd_parallel is None, parallel=self.dd_parallel,
            quantization=cfg.quantization,
        )  # fmt: skip

    def _build_other_stages(self, on_gpu: bool) -> None:
        from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage

        cfg, args = self.config, self.args
        files = self._standin_files()
        self.tokenizer = VideoTokenizerStage(files.dv_encoder, files.dv_decoder, levels=args.fsq_levels,
                                             dtype=self.dtype)  # fmt: skip
        self.text_encoder = None
        if args.cross_attn_every_k_layers:
            t5_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, None: self.dtype}[cfg.text_encoder_dtype]
            self.text_encoder = StandInTextEncoder(self.sizes.t5, dtype=t5_dtype)
        self.diffusion_decoder = self._build_diffusion_decoder(on_gpu)
        self.text_guardrail = self.video_guardrail = None
        if cfg.guardrail != "off":
            if self.text_encoder is not None:
                self.text_guardrail = StandInTextGuardrail(files.guardrail_dir, cfg.guardrail, self.sizes)
            self.video_guardrail = StandInVideoGuardrail(files.guardrail_dir, cfg.guardrail, self.sizes)


def open_pipeline(config: PipelineConfig, **kwargs) -> VideoPipeline:
    """The pipeline ``generate`` and ``serve`` run: read from the checkpoints, or with ``--load-format dummy``
    every stage at the released shapes with random weights (:class:`StandInPipeline`; no files needed but the
    AR folder's name or its ``cosmos_arch.json``), for measuring speed and memory where the weights are not.
    The few small files the stand-ins read go to a temporary folder removed at exit. Inductor's compile
    cache goes next to the checkpoints unless ``TORCHINDUCTOR_CACHE_DIR`` is set (``compile_cache``)."""
    from cosmos_cli.compile_cache import use_cache_next_to

    if config.compile:
        use_cache_next_to(Path(config.checkpoint_dir))
    if config.load_format != "dummy":
        return VideoPipeline(config, **kwargs)
    import atexit
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="cosmos-standins-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return StandInPipeline(config, workdir, **kwargs)
