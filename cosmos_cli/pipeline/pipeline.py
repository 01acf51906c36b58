"""The Video2World recipe: prompt + clip -> 33-frame mp4, stage by stage over a batch of samples.

Order (``shared/spec/cosmos-ar.md`` section 3.2): text guardrail -> T5 -> DV tokenizer encode -> AR
sampling -> diffusion decoder (or the DV decoder) -> video guardrail -> mp4. Each stage runs over every
sample of a chunk before the next stage is brought in, so offloading moves each model once per chunk,
and the AR model decodes up to ``batch_size`` samples together. A sample that fails or is blocked is
recorded and the others go on; every output is written atomically with its ``generation.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from cosmos_cli import __version__
from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.console import info, progress
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.errors import BadInput, CosmosError, GuardrailBlocked, describe
from cosmos_cli.io.atomic import atomic_path
from cosmos_cli.io.video import input_kind, load_model_input, write_mp4
from cosmos_cli.pipeline.fingerprint import (
    RECORD_KEY,
    difference,
    file_sha256,
    request_fingerprint,
    weights_identity,
)
from cosmos_cli.pipeline.interrupt import Interrupted
from cosmos_cli.pipeline.preload import PreloadingPlacements, start_preload
from cosmos_cli.pipeline.samples import Sample
from cosmos_cli.quant.linear import check_quantization
from cosmos_cli.stages.ar_model import ARModelStage

SUPPORTED_CONTEXT_FRAMES = (1, 9)
EventFn = Callable[[str, str, int, int], None]
"""``on_event(sample_name, stage, done, total)``: progress for callers such as the HTTP server."""


@dataclass
class PipelineConfig:
    checkpoint_dir: Path
    ar_model_dir: str
    device: str | None = None
    load_format: str = "auto"
    compile: bool = True
    batch_size: int = 1
    top_p: float | None = None
    temperature: float = 1.0
    guardrail: str = "full"
    diffusion_decoder: bool | None = None
    """True: required; False: DV decoder; None: used when its files are present."""
    dd_seed: int | None = None
    text_encoder_dtype: str | None = None
    placements: dict[str, str] = field(default_factory=dict)
    fps: float = 25.0
    pad: bool = False
    chunk_size: int = 16
    decoding: str = "sequential"
    scd_window: int = 32
    quantization: str = "bf16"
    """AR weights: bf16 (as released) or weight-only int8 / fp8 (``cosmos_cli.quant``); ``fp8`` also puts the
    diffusion decoder's DiT linears in fp8 (``cosmos_cli.models.diffusion_decoder.fp8``)."""
    preload: bool = True
    """Load the stages after the AR model while it decodes (``cosmos_cli.pipeline.preload``)."""
    dd_parallel: bool = True
    """Under tensor parallelism, the TP group's ranks share each video's diffusion decoding."""


@dataclass(frozen=True)
class DecoderCall:
    """What a TP leader announces before each video its group decodes together (tensors follow)."""

    seed: int
    num_frames: int


@dataclass
class SampleResult:
    name: str
    status: str = "pending"  # succeeded | skipped | blocked | failed
    video_path: str | None = None
    error: str | None = None
    exit_code: int = 0
    decoder: str | None = None
    faces_pixelated: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    decoding: dict = field(default_factory=dict)
    chunks: list[dict] = field(default_factory=list)
    """One record per chunk of the video (``--num-frames``; see :mod:`cosmos_cli.pipeline.long_video`)."""
    exception: BaseException | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The JSON-able fields (the exception object stays in memory: its message is ``error``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "exception"}


class VideoPipeline:
    """Owns the stages (loaded lazily, placed by :class:`Placements`) and runs batches of samples."""

    def __init__(self, config: PipelineConfig, model_builder=None, link=None):
        """``model_builder`` / ``link``: tensor parallelism (``cosmos_cli.parallel``); None for one process."""
        from cosmos_cli.parallel.link import SoloLink

        self.config = config
        self.link = link or SoloLink()
        self.layout = CheckpointLayout(Path(config.checkpoint_dir), config.ar_model_dir)
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        on_gpu = self.device.type == "cuda"
        check_quantization(config.quantization, self.device)  # fp8 on CPU / old GPUs: one line, nothing loaded
        self.dtype = torch.bfloat16 if on_gpu else torch.float32
        self.placements = PreloadingPlacements(self.device, config.placements)
        self.loader = None
        self.ar = ARModelStage(
            self.layout,
            dtype=self.dtype,
            load_format=config.load_format,
            compile=config.compile and on_gpu,
            model_builder=model_builder,
            decoding=config.decoding,
            scd_window=config.scd_window,
            quantization=config.quantization,
        )
        self.args = self.ar.args
        self.ar.require_files()
        self.tokenizer = self.text_encoder = self.diffusion_decoder = None
        self.text_guardrail = self.video_guardrail = None
        self.dd_parallel = self.link.dd_parallel() if config.dd_parallel else None
        if self.link.is_leader:
            self._build_other_stages(on_gpu)
        elif self.dd_parallel is not None:  # TP followers hold an AR shard and their part of the decoder
            self.diffusion_decoder = self._build_diffusion_decoder(on_gpu)

    # ---- construction: every missing file is reported before any model loads -------------------
    def _build_other_stages(self, on_gpu: bool) -> None:
        from cosmos_cli.guardrail import check_guardrail_available
        from cosmos_cli.stages.text_encoder import TextEncoderStage
        from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage

        cfg, layout = self.config, self.layout
        layout.require(layout.dv_encoder, layout.dv_decoder, what="DV8x16x16 video tokenizer")
        self.tokenizer = VideoTokenizerStage(
            layout.dv_encoder, layout.dv_decoder, levels=self.args.fsq_levels, dtype=self.dtype
        )
        self.text_encoder = None
        if self.args.cross_attn_every_k_layers:
            layout.require(layout.t5_dir / "config.json", what="T5 text encoder")
            t5_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, None: self.dtype}[cfg.text_encoder_dtype]
            self.text_encoder = TextEncoderStage(layout.t5_dir, dtype=t5_dtype)
        self.diffusion_decoder = self._build_diffusion_decoder(on_gpu)
        self.text_guardrail = self.video_guardrail = None
        if cfg.guardrail != "off":
            check_guardrail_available(cfg.guardrail, layout.guardrail_dir)
            from cosmos_cli.stages.guardrail import TextGuardrailStage, VideoGuardrailStage

            if self.text_encoder is not None:  # NVIDIA checks the prompt only where there is one
                self.text_guardrail = TextGuardrailStage(layout.guardrail_dir, cfg.guardrail)
            self.video_guardrail = VideoGuardrailStage(layout.guardrail_dir, cfg.guardrail)

    def _build_diffusion_decoder(self, on_gpu: bool):
        """The decoder stage when it is asked for or its files are present (the same answer on every rank)."""
        cfg, layout = self.config, self.layout
        dd_files = (layout.dd_dir / "model.pt", layout.cv_dir / "decoder.jit", layout.cv_dir / "mean_std.pt")
        if not (cfg.diffusion_decoder or (cfg.diffusion_decoder is None and all(p.exists() for p in dd_files))):
            return None
        layout.require(*dd_files, what="diffusion decoder (or pass --disable-diffusion-decoder)")
        from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage

        return DiffusionDecoderStage(
            layout, dtype=self.dtype, compile=cfg.compile and on_gpu and self.dd_parallel is None,
            parallel=self.dd_parallel, quantization=cfg.quantization,
        )  # fmt: skip

    def stages(self) -> list:
        return [
            s
            for s in (self.text_guardrail, self.text_encoder, self.tokenizer, self.ar, self.diffusion_decoder,
                      self.video_guardrail)
            if s is not None
        ]  # fmt: skip

    def load_all(self, on_stage: Callable[[str], None] | None = None) -> None:
        """Bring every ``gpu``-placed stage in now (a server does this once at start-up, logging each
        stage's name through ``on_stage`` before it loads)."""
        for stage in self.stages():
            if self.placements.placement(stage) == "gpu":
                if on_stage is not None:
                    on_stage(stage.name)
                stage.load(self.device)

    # ---- running -------------------------------------------------------------------------------
    def run(
        self,
        samples: list[Sample],
        output_dir: Path,
        *,
        overwrite: bool = False,
        on_event: EventFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        extra_record: dict | None = None,
    ) -> list[SampleResult]:
        """Generate every sample; returns one result each (skipped ones included), never raises for one.

        ``should_stop`` is asked between chunks and between the stages of a chunk; once it says yes, the
        samples not finished yet keep status ``pending`` and nothing more is written for them.

        On a tensor-parallel follower rank, ``samples`` is ignored: it runs the AR calls its leader
        announces and returns an empty list.
        """
        if not self.link.is_leader:
            self._follow_leader()
            return []
        output_dir = Path(output_dir)
        results = {s.name: SampleResult(s.name) for s in samples}
        self._requests: dict[str, dict] = {}
        todo = []
        for sample in samples:
            record = None if overwrite else sample.finished_record(output_dir)
            if record is None:
                todo.append(sample)
                continue
            with _recorded(results[sample.name]):  # a record for another request is this sample's error
                self._check_same_request(sample, record, output_dir)
                results[sample.name].status = "skipped"
                results[sample.name].video_path = str(sample.video_path(output_dir))
        if self.config.preload and todo:
            self.loader = start_preload(self)
        step = max(self.config.chunk_size, self.config.batch_size)
        try:
            for start in range(0, len(todo), step):
                if should_stop and should_stop():
                    break
                chunk = todo[start : start + step]
                self._run_chunk(
                    chunk, output_dir, results, on_event or (lambda *a: None), extra_record or {},
                    should_stop or (lambda: False), restart=overwrite,
                )  # fmt: skip
        except Interrupted as stop:  # SIGINT/SIGTERM (``interrupt.py``): the caller reports what is done
            stop.results = [results[s.name] for s in samples]
            raise
        self.link.share_object(None)  # tells TP followers that the work is done
        return [results[s.name] for s in samples]

    def _follow_leader(self) -> None:
        """TP follower: run exactly the AR batches the leader announces, on the leader's tensors."""
        while (plan := self.link.share_object(None)) is not None:
            if isinstance(plan, DecoderCall):
                self._follow_decoder(plan)
                continue
            if not plan:
                continue
            with self.placements.use(self.ar) as stage:
                for num_new, params, seeds, has_context in plan:
                    prompt = self.link.share_tensor(None)
                    context = self.link.share_tensor(None) if has_context else None
                    stage.generate(prompt, context, num_new, params, torch.tensor(seeds))

    def _follow_decoder(self, call: DecoderCall) -> None:
        """TP follower: this rank's part of one video's diffusion decoding, on the leader's tensors."""
        tokens, context = self.link.share_tensor(None), self.link.share_tensor(None)
        with self.placements.use(self.diffusion_decoder) as dd:
            dd.seed = call.seed
            try:
                dd.run(tokens.cpu(), context.cpu(), call.num_frames)
            except CosmosError:  # refused before any collective, as on the leader, which records it
                pass

    def _run_chunk(self, chunk, output_dir, results, on_event, extra_record, should_stop, restart=False) -> None:
        from cosmos_cli.pipeline.long_video import LongVideos

        long = LongVideos(self, output_dir, results, on_event, restart=restart)
        live: list[Sample] = []
        inputs: dict[str, np.ndarray] = {}
        for sample in chunk:
            with _recorded(results[sample.name]):
                inputs[sample.name] = self._read_input(sample)
                live.append(sample)

        live = self._stage_text_guardrail(live, results, on_event)
        if should_stop():
            return
        contexts = self._stage_text_encoder(live, results, on_event)
        first = long.without_saved_chunks(live)  # a resumed long video skips its first chunk
        tokens = self._stage_tokenize(first, inputs, results, on_event)
        first = [s for s in first if s.name in tokens]
        if should_stop():
            return
        generated = self._stage_ar(first, tokens, contexts, results, on_event)
        if should_stop():
            return
        videos = self._stage_decode(first, generated, contexts, results, on_event)
        videos = long.extend(live, videos, generated, contexts, should_stop)  # saves, then chunks past 33
        if should_stop():
            return
        videos = self._stage_video_guardrail(live, videos, results, on_event)
        long.record_frames(live, videos)
        for sample in live:
            if sample.name in videos:
                with _recorded(results[sample.name]):
                    self._write(sample, videos[sample.name], output_dir, results[sample.name], extra_record)
        long.finish(live)
        for sample in chunk:
            result = results[sample.name]
            if result.status in ("failed", "blocked"):
                try:
                    self._write_record(sample, output_dir, result, extra_record)
                except CosmosError as err:  # disk full, ...: the sample's own error stays the one reported
                    info(f"{sample.name}: could not record its failure: {err.one_line()}")

    def _request(self, sample: Sample) -> dict:
        """This sample's request fingerprint (``fingerprint.py``); reads the input file once to hash it."""
        kind = input_kind(sample.visual_input)
        sampling = self._sampling(sample)
        return request_fingerprint(
            self.config, sample, input_sha256=file_sha256(sample.visual_input), input_kind=kind,
            top_p=sampling.top_p, temperature=sampling.temperature,
            decoder="diffusion_decoder" if self.diffusion_decoder is not None else "dv_tokenizer",
            weights=None if self.config.load_format == "dummy" else weights_identity(self.layout.ar_weights),
        )  # fmt: skip

    def _check_same_request(self, sample: Sample, record: dict, output_dir: Path) -> None:
        differs = difference(record.get(RECORD_KEY), self._request(sample))
        if differs is not None:
            raise BadInput(
                f"{sample.folder(output_dir)} holds a video made for another request ({differs})",
                "pass --overwrite to replace it, or choose another --output-dir",
            )

    def _read_input(self, sample: Sample) -> np.ndarray:
        self._requests[sample.name] = self._request(sample)  # before an image forces one context frame
        if sample.num_input_frames not in SUPPORTED_CONTEXT_FRAMES:
            raise BadInput(f"num_input_frames must be 1 or 9, got {sample.num_input_frames}", "use 1 or 9")
        frames, info = load_model_input(
            sample.visual_input, sample.num_input_frames, self.args.video_height, self.args.video_width,
            pad=self.config.pad,
        )  # fmt: skip
        if info.get("kind") == "image":
            sample.num_input_frames = 1
        return frames

    def _stage_text_guardrail(self, live, results, on_event) -> list[Sample]:
        if self.text_guardrail is None or not live:
            return live
        kept = []
        with self._timed(live, results, "text_guardrail"), self.placements.use(self.text_guardrail) as stage:
            for i, sample in enumerate(live):
                with _recorded(results[sample.name]):
                    stage.check(sample.prompt)
                    kept.append(sample)
                on_event(sample.name, "text_guardrail", i + 1, len(live))
        return kept

    def _stage_text_encoder(self, live, results, on_event) -> dict[str, torch.Tensor]:
        if self.text_encoder is None or not live:
            return {}
        contexts = {}
        with self._timed(live, results, "text_encoder"), self.placements.use(self.text_encoder) as stage:
            with progress("encode prompts (T5)", len(live)) as advance:
                for i in range(0, len(live), 8):
                    group = live[i : i + 8]
                    emb, _mask = stage.encode([s.prompt for s in group], max_length=self.args.context_len)
                    for j, sample in enumerate(group):
                        contexts[sample.name] = emb[j : j + 1].cpu()
                        on_event(sample.name, "text_encoder", 1, 1)
                    advance(len(group))
        return contexts

    def _stage_tokenize(self, live, inputs, results, on_event) -> dict[str, torch.Tensor]:
        tokens = {}
        if not live:
            return tokens
        with self._timed(live, results, "tokenize"), self.placements.use(self.tokenizer) as stage:
            with progress("tokenize input video", len(live)) as advance:
                for sample in live:
                    with _recorded(results[sample.name]):
                        video = _to_model_video(inputs[sample.name], self.args.num_video_frames)
                        tokens[sample.name] = stage.encode(video).cpu()
                    on_event(sample.name, "tokenize", 1, 1)
                    advance(1)
        return tokens

    def _stage_ar(self, live, tokens, contexts, results, on_event) -> dict[str, torch.Tensor]:
        """Group samples that share a prompt length; decode ``batch_size`` of them at a time."""
        out = {}
        args, bov = self.args, self.args.bov_token
        groups: dict[int, list[Sample]] = {}
        for s in live:
            groups.setdefault(_context_latents(s.num_input_frames), []).append(s)
        batches = []
        for latent_t, members in groups.items():
            for i in range(0, len(members), self.config.batch_size):
                batches.append((latent_t, members[i : i + self.config.batch_size]))
        plan = [
            (
                args.num_video_tokens - t * args.tokens_per_frame,
                self._sampling(b[0]),
                [s.seed for s in b],
                bool(contexts),
            )
            for t, b in batches
        ]
        self.link.share_object(plan)  # TP followers run the same calls
        if not batches:
            return out
        with self._timed(live, results, "ar_model"), self.placements.use(self.ar) as stage:
            for (latent_t, batch), (num_new, params, seeds, _) in zip(batches, plan, strict=True):
                n_ctx = latent_t * args.tokens_per_frame
                flat = torch.stack([tokens[s.name].reshape(-1) for s in batch])
                prompt = flat[:, :n_ctx]
                if bov is not None:
                    prompt = torch.cat([torch.full((len(batch), 1), bov, dtype=prompt.dtype), prompt], 1)
                context = torch.cat([contexts[s.name] for s in batch]) if contexts else None
                prompt = self.link.share_tensor(prompt)
                if context is not None:
                    context = self.link.share_tensor(context)
                label = f"generate tokens ({len(batch)} x {num_new})"
                with progress(label, num_new * len(batch), unit="tok") as advance:

                    def tick(n: int, _batch=batch, _adv=advance, _total=num_new) -> None:
                        _adv(n * len(_batch))
                        for s in _batch:
                            on_event(s.name, "ar_model", 0, _total)

                    def prefill_done(_prompt=prompt, _stage=stage) -> None:
                        seconds = _stage.generator.stats.prefill_s
                        info(f"prefill: {_prompt.shape[0]} x {_prompt.shape[1]} tokens in {seconds:.2f} s")

                    new = stage.generate(
                        prompt, context, num_new, params, torch.tensor(seeds), on_progress=tick,
                        on_prefill_done=prefill_done,
                    )  # fmt: skip
                stats = stage.generator.stats
                decoding = {"mode": self.config.decoding, "prefill_s": round(stats.prefill_s, 3),
                            "decode_s": round(stats.decode_s, 3), "warmup_s": round(stats.warmup_s, 3)}  # fmt: skip
                if hasattr(stats, "summary"):
                    decoding.update(stats.summary())
                for j, sample in enumerate(batch):
                    results[sample.name].decoding = decoding
                    full = torch.cat([flat[j, :n_ctx], new[j].cpu()])
                    out[sample.name] = full.view(args.latent_shape)
                    on_event(sample.name, "ar_model", num_new, num_new)
        return out

    def _sampling(self, sample: Sample) -> SamplingParams:
        top_p = sample.top_p if sample.top_p is not None else self.config.top_p
        temperature = sample.temperature if sample.temperature is not None else self.config.temperature
        return SamplingParams(temperature=temperature, top_p=self.args.default_top_p if top_p is None else top_p)

    def _stage_decode(self, live, generated, contexts, results, on_event) -> dict[str, np.ndarray]:
        videos = {}
        if not generated:
            return videos
        frames = self.args.num_video_frames
        if self.diffusion_decoder is not None:
            context_for = self._dd_contexts(live, contexts)
            with (
                self._timed(live, results, "diffusion_decoder"),
                self.placements.use(self.diffusion_decoder) as dd,
            ):
                for sample in live:
                    if sample.name not in generated:
                        continue
                    with _recorded(results[sample.name]):
                        dd.seed = self.config.dd_seed if self.config.dd_seed is not None else sample.seed
                        tokens, context = generated[sample.name][None], context_for(sample)
                        if self.dd_parallel is not None:  # the TP followers decode this video with us
                            self.link.share_object(DecoderCall(dd.seed, frames))
                            tokens, context = self.link.share_tensor(tokens).cpu(), self.link.share_tensor(context)
                        total = dd.progress_total(tokens)
                        with progress(f"diffusion decoder {sample.name}", total) as advance:
                            video = dd.run(tokens, context.cpu(), frames, on_progress=advance)
                        videos[sample.name] = _to_uint8(video[0])
                        results[sample.name].decoder = "diffusion_decoder"
                    on_event(sample.name, "diffusion_decoder", 1, 1)
            return videos
        with self._timed(live, results, "decode_video"), self.placements.use(self.tokenizer) as stage:
            with progress("decode video (DV8x16x16)", len(generated)) as advance:
                for sample in live:
                    if sample.name not in generated:
                        continue
                    with _recorded(results[sample.name]):
                        video = stage.decode(generated[sample.name][None])  # [-1, 1]
                        videos[sample.name] = _to_uint8((video[0].float() * 0.5 + 0.5).clamp(0, 1))
                        results[sample.name].decoder = "dv_tokenizer"
                    on_event(sample.name, "decode_video", 1, 1)
                    advance(1)
        return videos

    def _dd_contexts(self, live, contexts):
        """The user prompt's T5 context (Video2World); base models use the generic ``aux_vars`` prompt."""
        if contexts:
            return lambda s: contexts[s.name]
        aux = torch.load(self.layout.dd_dir / "aux_vars.pt", map_location="cpu", weights_only=True)
        generic = aux["context"].float()
        generic = generic[None] if generic.dim() == 2 else generic
        return lambda s: generic

    def _stage_video_guardrail(self, live, videos, results, on_event) -> dict[str, np.ndarray]:
        if self.video_guardrail is None or not videos or not self.video_guardrail.active:
            return videos
        safe = {}
        with (
            self._timed(live, results, "video_guardrail"),
            self.placements.use(self.video_guardrail) as stage,
        ):
            for sample in live:
                if sample.name not in videos:
                    continue
                with _recorded(results[sample.name]):
                    frames, faces = stage.run(videos[sample.name])
                    safe[sample.name] = frames
                    results[sample.name].faces_pixelated = faces
                on_event(sample.name, "video_guardrail", 1, 1)
        return safe

    # ---- outputs -------------------------------------------------------------------------------
    def _write(self, sample: Sample, frames: np.ndarray, output_dir: Path, result: SampleResult, extra: dict):
        """The mp4, then its record. The old record goes first: a failure between the two writes leaves a
        video without a record (redone by a re-run), never a new video described by an old record."""
        path = sample.video_path(output_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        sample.result_path(output_dir).unlink(missing_ok=True)
        write_mp4(frames, path, fps=self.config.fps, overwrite=True)
        result.status = "succeeded"
        result.video_path = str(path)
        try:
            self._write_record(sample, output_dir, result, extra)
        except BaseException:
            path.unlink(missing_ok=True)  # a video without its record is not a result
            sample.result_path(output_dir).unlink(missing_ok=True)  # nor a record (committed as Ctrl-C came)
            result.status, result.video_path = "pending", None
            raise

    def _write_record(self, sample: Sample, output_dir: Path, result: SampleResult, extra: dict) -> None:
        record = {
            "status": result.status,
            "error": result.error,
            "video": result.video_path,
            "decoder": result.decoder,
            "faces_pixelated": result.faces_pixelated,
            "decoding": result.decoding,
            "quantization": self.config.quantization,
            "timings_s": result.timings,
            "chunks": result.chunks,
            "sample": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(sample).items()},
            "sampling": asdict(self._sampling(sample)),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()},
            "model": self.args.name,
            RECORD_KEY: getattr(self, "_requests", {}).get(sample.name),
            "device": str(self.device),
            "cosmos_cli": __version__,
            "finished_at": datetime.now(timezone.utc).isoformat(),
            **extra,
        }
        target = sample.result_path(output_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2))

    # ---- helpers -------------------------------------------------------------------------------
    class _Timer:
        def __init__(self, live, results, stage):
            self.live, self.results, self.stage = live, results, stage

        def __enter__(self):
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds = time.perf_counter() - self.t0
            for s in self.live:
                self.results[s.name].timings[self.stage] = round(seconds, 3)
            return False

    def _timed(self, live, results, stage):
        return self._Timer(live, results, stage)


def auto_batch_size(args, num_samples: int, device: torch.device, weights_bytes: int) -> int:
    """Samples decoded together: as many as free GPU memory allows after the weights (each needs a KV
    cache plus ~1 GiB of working space), at most 8 (where tokens/s stop scaling), at least 1."""
    if device.type != "cuda":
        return max(1, min(num_samples, 4))
    free, _total = torch.cuda.mem_get_info(device)
    per_sample = args.kv_cache_bytes(1) + 2**30
    fit = int((free - weights_bytes - 2 * 2**30) // per_sample)
    return max(1, min(num_samples, 8, fit))


class _recorded:
    """Turn a per-sample error into that sample's result (blocked / failed) instead of ending the batch."""

    def __init__(self, result: SampleResult):
        self.result = result

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError, torch.cuda.OutOfMemoryError)):
            return False
        self.result.status = "blocked" if isinstance(exc, GuardrailBlocked) else "failed"
        self.result.error = describe(exc)
        self.result.exit_code = exc.exit_code if isinstance(exc, CosmosError) else 1
        self.result.exception = exc
        return True


def _context_latents(num_input_frames: int) -> int:
    """Latent frames of context: how many of the supported lengths (1, 9) fit (reference's loop)."""
    return sum(1 for n in SUPPORTED_CONTEXT_FRAMES if n <= num_input_frames)


def _to_model_video(frames: np.ndarray, total_frames: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (1, 3, total, H, W) in [-1, 1], padded by repeating the last frame."""
    if len(frames) < total_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], total_frames - len(frames), axis=0)])
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float()
    return video / 255.0 * 2.0 - 1.0


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [0, 1] -> uint8 (T, H, W, 3), truncating like the reference's ``(x*255).to(uint8)``."""
    return (video * 255).to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
