"""The AR-model stage: NVIDIA's ``model.pt`` (or random weights at the real shape) behind the Stage contract.

Resolves the architecture the way the reference does, from the checkpoint folder's name ("...-5B-..." ->
the 5B preset), unless a ``cosmos_arch.json`` next to the weights describes another shape (tiny models).
On the GPU the loaded model gets fused projections and a generator with the compiled, CUDA-graph decode;
``quantization`` int8/fp8 then stores its linears in one byte per weight (:mod:`cosmos_cli.quant`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import torch

from cosmos_cli.checkpoints import ARCH_FILE, CheckpointLayout
from cosmos_cli.decode.base import TokenGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.decode.speculative import DECODINGS, make_generator
from cosmos_cli.errors import BadInput
from cosmos_cli.io.readahead import read_ahead
from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import PRESETS, ModelArgs, preset_from_dir_name
from cosmos_cli.pipeline.stage import Stage
from cosmos_cli.quant.linear import check_quantization, quantize_model

MAX_SCD_WINDOW = 128
"""Widest speculative window accepted (the published SCD result used 128; docs/speculative-decoding.md)."""


def resolve_model_args(ar_dir: Path) -> ModelArgs:
    """The architecture of the checkpoint in ``ar_dir``: its ``cosmos_arch.json``, else the name's preset;
    for a NeMo checkpoint folder, its ``context/model.yaml`` and tensor shapes (``cosmos_cli.nemo``)."""
    from cosmos_cli.nemo.args import nemo_model_args

    nemo = nemo_model_args(ar_dir)
    if nemo is not None:
        return nemo
    arch = ar_dir / ARCH_FILE
    if arch.exists():
        return ModelArgs.from_json(arch)
    preset = preset_from_dir_name(ar_dir.name)
    if preset is None:
        raise BadInput(
            f"cannot tell the model size from the folder name {ar_dir.name!r}",
            "use NVIDIA's folder names (e.g. Cosmos-1.0-Autoregressive-5B-Video2World) or add a cosmos_arch.json",
        )
    return PRESETS[preset]


class ARModelStage(Stage):
    """Prompt tokens + text context -> generated video tokens."""

    name = "ar_model"

    def __init__(
        self,
        layout: CheckpointLayout,
        *,
        dtype: torch.dtype,
        load_format: str = "auto",
        compile: bool = False,
        model_builder: Callable[..., Transformer] | None = None,
        decoding: str = "sequential",
        scd_window: int = 32,
        quantization: str = "bf16",
    ):
        if load_format not in ("auto", "dummy"):
            raise BadInput(f"unknown --load-format {load_format!r}", "use auto or dummy")
        if decoding not in DECODINGS:
            raise BadInput(f"unknown --decoding {decoding!r}", f"use one of {', '.join(DECODINGS)}")
        if not 1 <= scd_window <= MAX_SCD_WINDOW:
            raise BadInput(
                f"--scd-window must be between 1 and {MAX_SCD_WINDOW}, got {scd_window}", "use e.g. --scd-window 32"
            )
        check_quantization(quantization, None, name_only=True)
        if quantization != "bf16" and model_builder is not None:
            raise BadInput(f"--quantization {quantization} does not work with --tp > 1 yet", "use --tp 1")
        self.quantization = quantization
        self.decoding = decoding
        self.scd_window = scd_window
        self.layout = layout
        self.dtype = dtype
        self.load_format = load_format
        self.compile = compile
        self.model_builder = model_builder or build_model
        """``build_model`` or a tensor-parallel builder with the same signature (``parallel.tp``)."""
        self.args = resolve_model_args(layout.ar_dir)
        self.model: Transformer | None = None
        self.generator: TokenGenerator | None = None
        self._generators: dict[torch.device, TokenGenerator] = {}
        self.decode_started = threading.Event()
        """Set once a ``generate`` call is past its prefill and CUDA-graph capture, or done: from then on other
        threads may allocate on the GPU (``cosmos_cli.pipeline.preload``)."""

    @property
    def weights(self) -> Path | None:
        return None if self.load_format == "dummy" else self.layout.ar_weights

    def require_files(self) -> None:
        if self.weights is not None:
            self.layout.require(self.weights, what="AR model weights")

    def load(self, device: torch.device) -> None:
        device = torch.device(device)
        if self.model is not None:
            self.to(device)
            return
        self.require_files()
        with read_ahead(self.weights):  # the disk's sequential rate instead of page-fault reads
            model = self.model_builder(self.args, weights=self.weights, dtype=self.dtype, device=device)
        if device.type == "cuda":
            model.fuse_projections()
        self.model = quantize_model(model, self.quantization)  # bf16: unchanged
        self.generator = self._generator(device)

    def modules(self) -> list[torch.nn.Module]:
        return [] if self.model is None else [self.model]

    def _drop(self) -> None:
        self.model = None
        self.generator = None
        self._generators.clear()

    def to(self, device: torch.device) -> None:
        """Move the weights (``cpu`` placement); caches are freed and captured graphs released.

        One generator per device is kept, so bringing the model back to the GPU for the next batch
        re-captures its CUDA graphs but never recompiles the decode step (a new generator would, and
        after a few batches torch.compile's recompile limit would leave decoding eager).
        """
        if self.model is None:
            return
        device = torch.device(device)
        self.model.free_caches()
        self.model.to(device)
        self.generator = self._generator(device)
        self.generator.release_graphs()

    def _generator(self, device: torch.device) -> TokenGenerator:
        """Sequential (one token per step) or speculative coupled decoding; both share ``generate``."""
        if device not in self._generators:
            compile = self.compile and device.type == "cuda"
            self._generators[device] = make_generator(
                self.model, self.decoding, window=self.scd_window, compile=compile
            )
        return self._generators[device]

    @torch.inference_mode()
    def generate(
        self,
        prompt: torch.Tensor,
        context: torch.Tensor | None,
        num_new: int,
        params: SamplingParams,
        seeds: torch.Tensor,
        on_progress: Callable[[int], None] | None = None,
        on_prefill_done: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """``num_new`` tokens (B, num_new) after ``prompt`` (B, P), each sample seeded by ``seeds`` (B,)."""
        if self.generator is None:
            raise RuntimeError("ARModelStage.generate called before load")
        use_context = context if self.args.cross_attn_every_k_layers else None
        # The first report comes after the prefill, before the decode step is captured in a CUDA graph;
        # the second after the capture. Without graphs (CPU) there is nothing to wait for.
        reports, captured_after = 0, (2 if self.generator.cuda_graph else 1)

        def progress(n: int) -> None:
            nonlocal reports
            reports += 1
            if reports >= captured_after:
                self.decode_started.set()
            if on_progress is not None:
                on_progress(n)

        try:
            return self.generator.generate(
                prompt,
                num_new,
                params,
                seeds,
                context=use_context,
                on_progress=progress,
                on_prefill_done=on_prefill_done,
            )
        finally:
            self.decode_started.set()
