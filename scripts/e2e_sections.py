"""The measurements of ``scripts/bench_e2e.py``: one pipeline in one process, section by section.

Kept apart from the command-line script so that each section reads as one method; the pipeline is the
shipped one on the stand-in stages (:class:`StandInStages`: the real stage classes with random weights at
the real shapes), with hooks that only *record* (stage inputs and outputs, mp4 write time), so the code
measured is the code run.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from pathlib import Path

import numpy as np
import torch

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.io.readahead import drop_from_page_cache, read_ahead
from cosmos_cli.pipeline.pipeline import PipelineConfig, SampleResult, VideoPipeline, _to_uint8
from cosmos_cli.pipeline.samples import Sample
from cosmos_cli.stages.factory import StageContext, StageFactory
from cosmos_cli.stages.standins import StandInStages

AR_5B = "Cosmos-1.0-Autoregressive-5B-Video2World"
PROMPT = "A robotic arm picks up a red cube from a cluttered table and places it into a blue bin, steady camera."
PER_SAMPLE = ("text_guardrail", "tokenize", "diffusion_decoder", "decode_video", "video_guardrail", "write_mp4")
BATCHED = ("text_encoder", "ar_model")
STAGES = ("text_guardrail", "text_encoder", "tokenize", "ar_model", "diffusion_decoder", "decode_video",
          "video_guardrail", "write_mp4")  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class BenchStages(StandInStages):
    """The stand-ins; with ``files`` the AR model and the diffusion decoder are the real stages reading files
    (the pipeline's ``checkpoint_dir`` is then ``files``)."""

    def __init__(self, standin_dir: Path, files: Path | None = None):
        super().__init__(standin_dir)
        self.real = files is not None

    def ar_model(self, config, layout, **kwargs):
        if self.real:
            return StageFactory.ar_model(self, config, layout, **kwargs)
        return super().ar_model(config, layout, **kwargs)

    def diffusion_decoder(self, ctx: StageContext):
        if not self.real or ctx.config.diffusion_decoder is False:
            return super().diffusion_decoder(ctx)
        from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage

        return DiffusionDecoderStage(ctx.layout, dtype=ctx.dtype, compile=ctx.dd_compile,
                                     quantization=ctx.config.quantization)  # fmt: skip


class BenchPipeline(VideoPipeline):
    """The pipeline on :class:`BenchStages`, recording stage inputs/outputs for the fp8 and batch sections and
    timing the mp4 write."""

    def __init__(self, config: PipelineConfig, standin_dir: Path, files: Path | None = None):
        self.files = files
        self.captured: dict[str, dict] = {"contexts": {}, "tokens": {}, "generated": {}, "videos": {}}
        super().__init__(config, stages=BenchStages(standin_dir, files))

    def _stage_text_encoder(self, live, results, on_event):
        out = super()._stage_text_encoder(live, results, on_event)
        self.captured["contexts"].update(out)
        return out

    def _stage_tokenize(self, live, inputs, results, on_event):
        out = super()._stage_tokenize(live, inputs, results, on_event)
        self.captured["tokens"].update(out)
        return out

    def _stage_decode(self, live, generated, contexts, results, on_event):
        self.captured["generated"].update(generated)
        out = super()._stage_decode(live, generated, contexts, results, on_event)
        self.captured["videos"].update(out)
        return out

    def _write(self, sample, frames, output_dir, result, extra):
        t0 = time.perf_counter()
        super()._write(sample, frames, output_dir, result, extra)
        result.timings["write_mp4"] = round(time.perf_counter() - t0, 3)


class LatentRecorder:
    """Keeps the latents the CV8x8x8 decoder receives: the diffusion sampler's output."""

    def __init__(self):
        self.latents: list[torch.Tensor] = []
        self._handle = None

    def attach(self, dd) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = dd._cv.register_forward_pre_hook(lambda _m, inp: self.latents.append(inp[0].float().cpu()))


def _write_clip(path: Path, frames: int, height: int, width: int) -> Path:
    from cosmos_cli.io.video import write_mp4

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    video = np.stack([np.roll(np.kron(base, np.ones((16, 16, 1), np.uint8)), 4 * i, axis=1) for i in range(frames)])
    write_mp4(video, path, fps=25, overwrite=True)
    return path


class E2EBench:
    def __init__(self, device: torch.device, workdir: Path, *, tiny: bool, files: Path | None):
        self.device = device
        self.workdir = Path(workdir)
        self.tiny = tiny
        self.files = Path(files) if files else None
        if tiny:
            from cosmos_cli.tiny.ar import TINY_AR_DIR, write_tiny_ar

            ar_dir = TINY_AR_DIR
            root = self.files or self.workdir / "ck"
            if not (root / ar_dir / "model.pt").exists():
                write_tiny_ar(root)
        else:
            ar_dir, root = AR_5B, self.files or self.workdir / "ck"
            (root / ar_dir).mkdir(parents=True, exist_ok=True)
        self.config = PipelineConfig(checkpoint_dir=root, ar_model_dir=ar_dir, device=str(device), guardrail="full",
                                     load_format="auto" if self.files else "dummy")  # fmt: skip
        self._pipeline: BenchPipeline | None = None
        self.recorder = LatentRecorder()
        self.videos = 0
        self.names: list[str] = []

    @property
    def pipeline(self) -> BenchPipeline:
        if self._pipeline is None:
            self._pipeline = BenchPipeline(self.config, self.workdir / "standins", files=self.files)
            a = self._pipeline.args
            self.clip = _write_clip(self.workdir / "input.mp4", 9, a.video_height, a.video_width)
        return self._pipeline

    def release(self) -> None:
        """Free the pipeline's stages (GPU memory for the loading sections); its settings stay."""
        if self._pipeline is not None:
            for stage in self._pipeline.stages():
                stage.unload()
        _free(self.device)

    # ---- disk and loading ------------------------------------------------------------------------
    def _file(self, which: str) -> Path:
        layout = self.pipeline.layout if self.files is None else CheckpointLayout(self.files, self.config.ar_model_dir)
        return layout.ar_weights if which == "ar" else layout.dd_dir / "model.pt"

    def _drop_all(self) -> None:
        for which in ("ar", "dd"):
            if self._file(which).exists():
                drop_from_page_cache(self._file(which))

    def disk_rate(self) -> dict:
        """Sequential read of the AR file after dropping it from the page cache, then again (cached)."""
        path = self._file("ar")
        out = {"file": str(path), "bytes": path.stat().st_size, "chunk_MiB": 64}
        for label in ("cold", "page_cache"):
            if label == "cold":
                drop_from_page_cache(path)
            t0 = time.perf_counter()
            with open(path, "rb", buffering=0) as f:
                buffer = memoryview(bytearray(64 << 20))
                while f.readinto(buffer):
                    pass
            seconds = time.perf_counter() - t0
            out[f"{label}_s"] = round(seconds, 3)
            out[f"{label}_GBps"] = round(out["bytes"] / seconds / 1e9, 3)
        drop_from_page_cache(path)
        out["note"] = ("cold = after posix_fadvise(DONTNEED) of the just-written file; a disk cache below the "
                       "page cache (network volume, controller) may still serve part of it")  # fmt: skip
        return out

    def load_rates(self) -> dict:
        """The AR model file -> GPU: plain mmap reads vs with the read-ahead thread; the diffusion decoder."""
        from cosmos_cli.models.ar.weights import build_model
        from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage

        p = self.pipeline
        out = {}
        ar = self._file("ar")
        if not ar.exists():
            return {"error": f"{ar} missing"}
        for label, ctx in (("ar_mmap", contextlib.nullcontext), ("ar_mmap_read_ahead", lambda: read_ahead(ar))):
            drop_from_page_cache(ar)
            t0 = time.perf_counter()
            with ctx():
                model = build_model(p.args, weights=ar, dtype=p.dtype, device=self.device)
            _sync(self.device)
            seconds = time.perf_counter() - t0
            out[label] = {"s": round(seconds, 3), "GBps": round(ar.stat().st_size / seconds / 1e9, 3)}
            del model
            _free(self.device)
        dd_file = self._file("dd")
        if dd_file.exists():
            drop_from_page_cache(dd_file)
            stage = DiffusionDecoderStage(CheckpointLayout(self.files, self.config.ar_model_dir), dtype=p.dtype)
            t0 = time.perf_counter()
            stage.load(self.device)
            _sync(self.device)
            seconds = time.perf_counter() - t0
            out["dd_mmap_read_ahead"] = {
                "s": round(seconds, 3),
                "GBps": round(dd_file.stat().st_size / seconds / 1e9, 3),
            }
            stage.unload()
            del stage
            _free(self.device)
        self._drop_all()
        return out

    # ---- videos ------------------------------------------------------------------------------------
    def video(self, label: str) -> dict:
        """One video through ``pipeline.run``: wall time, each stage's time, loads, compile + capture."""
        p = self.pipeline
        if label == "cold" and self.files is not None:
            self._drop_all()
        p.placements.reset_records()
        name = f"{label}{self.videos}"
        self.videos += 1
        sample = Sample(name, PROMPT, self.clip, seed=7, num_input_frames=9)
        if p.diffusion_decoder is not None and p.diffusion_decoder.loaded:
            self.recorder.attach(p.diffusion_decoder)
        self.recorder.latents.clear()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        (result,) = p.run([sample], self.workdir / "out", overwrite=True)
        wall = time.perf_counter() - t0
        if result.status != "succeeded":
            raise RuntimeError(f"{label} video {result.status}: {result.error}")
        if not self.recorder.latents and p.diffusion_decoder is not None:
            self.recorder.attach(p.diffusion_decoder)  # cold: the stage was loaded during the run
        self.names.append(name)
        stages = {k: result.timings[k] for k in STAGES if k in result.timings}
        loads = {n: round(r.bring_in_seconds, 3) for n, r in p.placements.records.items() if r.loads}
        out = {
            "sample": name,
            "wall_s": round(wall, 3),
            "stages_s": stages,
            "stage_sum_s": round(sum(stages.values()), 3),
            "ar": result.decoding,
            "foreground_loads_s": loads,
            "background_loads": p.loader.summary() if (p.loader is not None and label == "cold") else {},
            "peak_gib": round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
            if self.device.type == "cuda"
            else None,
            "mp4_bytes": Path(result.video_path).stat().st_size,
        }
        if label == "cold":
            p.loader = None
            p.placements.loader = None
        return out

    # ---- fp8 diffusion decoder ---------------------------------------------------------------------
    def fp8(self, warm: dict) -> dict:
        p, dd = self.pipeline, self.pipeline.diffusion_decoder
        if dd is None:
            return {"error": "no diffusion decoder"}
        name = warm["sample"]
        tokens = p.captured["generated"][name][None]
        context = p.captured["contexts"][name]
        ref_frames = p.captured["videos"][name]
        ref_latents = list(self.recorder.latents)
        frames_n = p.args.num_video_frames
        dd.unload()
        _free(self.device)
        dd.quantization = "fp8"
        t0 = time.perf_counter()
        dd.load(self.device)
        _sync(self.device)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dd.warm_up(tuple(p.args.latent_shape), p.args.context_len)
        _sync(self.device)
        compile_s = time.perf_counter() - t0
        self.recorder.attach(dd)
        self.recorder.latents.clear()
        dd.seed = 7  # the warm video's seed (no --dd-seed)
        t0 = time.perf_counter()
        video = dd.run(tokens, context, frames_n)
        _sync(self.device)
        stage_s = time.perf_counter() - t0
        frames = _to_uint8(video[0])
        lat, ref = self.recorder.latents[0], ref_latents[0]
        diff = frames.astype(np.float64) - ref_frames.astype(np.float64)
        mse = float((diff**2).mean())
        bf16_s = warm["stages_s"]["diffusion_decoder"]
        return {
            "gemm": gemm_check(self.device, p.dtype, dd._net.config),
            "load_s": round(load_s, 3),
            "compile_s": round(compile_s, 3),
            "stage_s": round(stage_s, 3),
            "bf16_stage_s": bf16_s,
            "speedup": round(bf16_s / stage_s, 3),
            "latent_max_abs": float((lat - ref).abs().max()),
            "latent_mean_abs": float((lat - ref).abs().mean()),
            "latent_ref_mean_abs": float(ref.abs().mean()),
            "frames_max_abs": float(np.abs(diff).max()),
            "frames_mean_abs": float(np.abs(diff).mean()),
            "frames_psnr_db": round(10 * math.log10(255.0**2 / mse), 2) if mse > 0 else None,
            "video_s_composed": round(warm["wall_s"] - bf16_s + stage_s, 3),
            "note": "quantized: q/k/v/out of self-attention, q/out of cross-attention, both MLP layers; "
            "per-row fp8 e4m3 scales (weights per output row, activations per token); the rest bf16",
        }

    # ---- batch ---------------------------------------------------------------------------------------
    def batch(self, n: int, warm: dict) -> dict:
        """T5 and the AR model over ``n`` samples at once (the warm video's inputs); composed per-video time."""
        p = self.pipeline
        name = warm["sample"]
        samples = [Sample(f"batch{i}", PROMPT, self.clip, seed=100 + i, num_input_frames=9) for i in range(n)]
        tokens = {s.name: p.captured["tokens"][name] for s in samples}
        results = {s.name: SampleResult(s.name) for s in samples}
        old = p.config.batch_size
        p.config.batch_size = n
        try:
            contexts = p._stage_text_encoder(samples, results, lambda *a: None)
            p._stage_ar(samples, tokens, contexts, results, lambda *a: None)
        finally:
            p.config.batch_size = old
        timings, decoding = results[samples[0].name].timings, results[samples[0].name].decoding
        ar_steady = timings["ar_model"] - decoding.get("warmup_s", 0.0)
        per_sample = sum(warm["stages_s"].get(k, 0.0) for k in PER_SAMPLE)
        per_video = (timings["text_encoder"] + ar_steady) / n + per_sample
        single = warm["stage_sum_s"]
        return {
            "batch": n,
            "text_encoder_s": timings["text_encoder"],
            "ar_model_s": timings["ar_model"],
            "ar_warmup_s": decoding.get("warmup_s"),
            "ar_steady_s": round(ar_steady, 3),
            "ar": decoding,
            "per_sample_stages_s": round(per_sample, 3),
            "per_video_s_composed": round(per_video, 3),
            "single_video_stage_sum_s": single,
            "per_video_speedup": round(single / per_video, 3),
        }


def gemm_check(device: torch.device, dtype: torch.dtype, config) -> dict:
    """The MLP's first GEMM at the video's token count: fp8 vs bf16 rate, and the kernel against its
    dequantized float32 emulation and against the bf16 product (relative Frobenius error)."""
    from cosmos_cli.models.diffusion_decoder.fp8 import Fp8Linear, scaled_mm_supported

    m = 2 * 20480 if device.type == "cuda" else 256
    k, n = config.model_channels, config.mlp_hidden
    g = torch.Generator(device=device).manual_seed(3)
    x = torch.randn(m, k, device=device, generator=g).to(dtype)
    w = (torch.randn(n, k, device=device, generator=g) * 0.02).to(dtype)
    fast = Fp8Linear(w, emulate=not scaled_mm_supported(device))
    slow = Fp8Linear(w, emulate=True)
    ref = x.float() @ w.float().t()

    def rel(a):
        return float((a.float() - ref).norm() / ref.norm())

    def rate(fn, repeat=10 if device.type == "cuda" else 1):
        fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        _sync(device)
        return 2 * m * k * n / ((time.perf_counter() - t0) / repeat) / 1e12

    return {
        "shape_mkn": [m, k, n],
        "kernel": "torch._scaled_mm" if not fast.emulate else "emulated",
        "rel_err_fp8": rel(fast(x)),
        "rel_err_fp8_emulated": rel(slow(x)),
        "rel_err_bf16": rel(x @ w.t()),
        "tflops_bf16": round(rate(lambda: x @ w.t()), 1),
        "tflops_fp8_with_quantize": round(rate(lambda: fast(x)), 1),
    }


def targets(report: dict) -> dict:
    """The issue's targets next to what was measured (None where a section did not run)."""
    warm, cold, fp8, batch = (report.get(k) for k in ("warm", "cold", "fp8", "batch"))
    out = {}
    if warm:
        out["warm_bf16_video_s"] = {"measured": warm["wall_s"], "target": 50, "met": warm["wall_s"] <= 50}
    if fp8:
        out["fp8_video_s_composed"] = {"measured": fp8["video_s_composed"], "target": 35,
                                       "met": fp8["video_s_composed"] <= 35}  # fmt: skip
        out["fp8_dd_speedup"] = {"measured": fp8["speedup"], "target": 1.4, "met": fp8["speedup"] >= 1.4}
    if batch:
        out["batch_per_video_speedup"] = {"measured": batch["per_video_speedup"], "target": 1.5,
                                          "met": batch["per_video_speedup"] >= 1.5}  # fmt: skip
    if cold:
        exposed = exposed_compile_s(report)
        out["cold_compile_capture_s"] = {"measured": exposed, "target": 40, "met": exposed <= 40}
    disk, load = report.get("disk"), report.get("load")
    if disk and load and "error" not in disk and "error" not in load:
        best = max(v["GBps"] for v in load.values())
        out["load_vs_disk"] = {"measured": round(best / disk["cold_GBps"], 3), "target": 0.7,
                               "met": best >= 0.7 * disk["cold_GBps"]}  # fmt: skip
    return out


def exposed_compile_s(report: dict) -> float:
    """Compile + capture the cold video waits for: the AR step's, plus whatever the diffusion decoder's
    first call cost over its warm call (zero when its compile ran in the background)."""
    cold, warm = report["cold"], report.get("warm")
    ar = cold["ar"].get("warmup_s", 0.0)
    dd = 0.0
    if warm and "diffusion_decoder" in cold["stages_s"]:
        dd = max(0.0, cold["stages_s"]["diffusion_decoder"] - warm["stages_s"]["diffusion_decoder"])
    return round(ar + dd, 3)


def print_table(report: dict) -> None:
    cold, warm, fp8, batch = (r if r and "error" not in r else None for r in
                              (report.get(k) for k in ("cold", "warm", "fp8", "batch")))  # fmt: skip
    for name in report.get("errors", []):
        print(f"section {name} FAILED: {report[name]['error']}")
    print(f"\nend to end, {report['shapes']}, {report['device_name']}, torch {report['torch']}, "
          f"weights {report['weights']}")  # fmt: skip
    if report.get("disk") and "error" not in report["disk"]:
        d = report["disk"]
        print(f"disk: {d['cold_GBps']} GB/s sequential cold read, {d['page_cache_GBps']} GB/s from page cache")
    for label, row in (report.get("load") or {}).items():
        if not isinstance(row, dict):
            continue
        print(f"load {label}: {row['s']} s = {row['GBps']} GB/s")
    cols = [("cold", cold), ("warm", warm)]
    print(f"{'stage':18s}" + "".join(f"{c:>10s}" for c, r in cols if r) + f"{'fp8':>10s}{'batch/vid':>10s}")
    for stage in STAGES:
        if not any(stage in r["stages_s"] for _, r in cols if r):
            continue
        cells = [f"{r['stages_s'].get(stage, 0.0):10.2f}" for _, r in cols if r]
        f8 = f"{fp8['stage_s']:10.2f}" if (fp8 and stage == "diffusion_decoder") else f"{'':10s}"
        if batch and stage in BATCHED:
            key = "text_encoder_s" if stage == "text_encoder" else "ar_steady_s"
            b = f"{batch[key] / batch['batch']:10.2f}"
        else:
            b = f"{'':10s}"
        print(f"{stage:18s}" + "".join(cells) + f8 + b)
    walls = [f"{r['wall_s']:10.2f}" for _, r in cols if r]
    f8 = f"{fp8['video_s_composed']:10.2f}" if fp8 else f"{'':10s}"
    b = f"{batch['per_video_s_composed']:10.2f}" if batch else f"{'':10s}"
    print(f"{'video wall s':18s}" + "".join(walls) + f8 + b)
    if cold:
        print(
            f"cold: AR compile+capture {cold['ar'].get('warmup_s')} s, "
            f"exposed compile {exposed_compile_s(report)} s, background loads {cold['background_loads']}"
        )
    if fp8:
        print(f"fp8 DD: {fp8['speedup']}x, latent max/mean abs {fp8['latent_max_abs']:.4g}/"
              f"{fp8['latent_mean_abs']:.4g}, frames max/mean abs {fp8['frames_max_abs']:.0f}/"
              f"{fp8['frames_mean_abs']:.3f}, PSNR {fp8['frames_psnr_db']} dB")  # fmt: skip
    for key, t in report.get("targets", {}).items():
        print(f"target {key}: {t['measured']} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    for s in report.get("skipped", []):
        print(f"skipped: {s}")
