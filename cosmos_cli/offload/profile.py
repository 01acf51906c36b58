"""Run the pipeline under several offloading strategies and measure each stage (``offload-profile``).

A *row* is a strategy name (NVIDIA's rows, ``all-stream`` = every stage that can on ``stream`` placement and
the rest ``cpu``, or ``auto`` = the planner's pick for the GPU budget) with
optional modifiers separated by ``/``: ``b4`` (batch of 4 samples), ``warm`` (run the batch once before the
measured run, so one-time work such as compiling for a new batch size is not counted), ``no-dd`` (DV8x16x16 decoder
instead of the diffusion decoder), ``blocklist`` (guardrail without its models), ``fp32-t5`` (T5 in fp32, as
NVIDIA runs it). Example: ``all-but-ar/b4/warm``.

Each row builds a fresh pipeline, brings every stage to its between-uses state (``Placements.prepare``:
NVIDIA's "after model initialization"), runs one batch and reads :class:`~cosmos_cli.offload.placements.
StageRecord` s. Rows run one after another in this process; GPU memory is released between them and the
memory still allocated when a row starts is recorded (``allocated_at_start``), so a leak would show.

Decoding can be shortened for quick tables (``ar_tokens``: the AR model generates that many tokens, the
rest are random; ``dd_steps``: fewer diffusion steps). Memory is unaffected (the KV cache is allocated for
the full sequence, each diffusion step has the same shape); the full-length time is extrapolated from the
measured per-token and per-step rates and labelled as such.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cosmos_cli.errors import BadInput
from cosmos_cli.memory import free_device_memory
from cosmos_cli.offload.placements import STAGE_NAMES
from cosmos_cli.offload.plan import GIB

MODIFIERS = ("warm", "no-dd", "blocklist", "fp32-t5")
PROMPT = (
    "A video recorded from a moving vehicle's perspective, capturing roads, buildings, landscapes, and changing "
    "weather and lighting conditions. The camera moves steadily along a wide city avenue lined with trees."
)
DEFAULT_ROWS = (
    "none", "guardrails", "guardrails+t5", "guardrails+t5+dd", "all-but-ar", "all",
    "none/b4", "all-but-ar/b4", "all/no-dd",
)  # fmt: skip
"""NVIDIA's six rows, the batch-of-4 comparison of no offload against everything but the AR model, and full
offload without the diffusion decoder. More: ``all/no-dd/blocklist`` (no guardrail models), ``none/fp32-t5``
(T5 in fp32 as NVIDIA runs it), ``auto`` (the plan's pick for ``--gpu-memory``), ``all-stream`` and
``all-stream/no-dd`` (streamed stages; not default: a streamed stage is loaded in host memory, and the dummy
stand-ins' random initialisation of ~19B parameters on the CPU adds a minute or more per row)."""
CARDS = {
    "RTX 4090 (24 GB)": 24564 * 2**20,
    "A100 (40 GB)": 40960 * 2**20,
    "A40 / L40S (48 GB)": 46068 * 2**20,
    "H100 (80 GB)": 81559 * 2**20,
}
"""What ``torch.cuda.mem_get_info`` reports as total memory on these cards."""


@dataclass(frozen=True)
class RowSpec:
    strategy: str
    batch: int = 1
    warm: bool = False
    no_dd: bool = False
    blocklist: bool = False
    fp32_t5: bool = False

    @property
    def name(self) -> str:
        mods = [f"b{self.batch}"] if self.batch != 1 else []
        mods += [m for m, on in (("warm", self.warm), ("no-dd", self.no_dd), ("blocklist", self.blocklist),
                                 ("fp32-t5", self.fp32_t5)) if on]  # fmt: skip
        return "/".join([self.strategy, *mods])


def parse_row(text: str, strategies: list[str]) -> RowSpec:
    name, *mods = [part.strip() for part in text.strip().split("/")]
    if name not in strategies:
        raise BadInput(f"unknown strategy {name!r} in row {text!r}", f"use one of {', '.join(strategies)}")
    spec = RowSpec(name)
    for mod in mods:
        if mod.startswith("b") and mod[1:].isdigit() and int(mod[1:]) > 0:
            spec = dataclasses.replace(spec, batch=int(mod[1:]))
        elif mod in MODIFIERS:
            spec = dataclasses.replace(spec, **{mod.replace("-", "_"): True})
        else:
            raise BadInput(f"unknown modifier {mod!r} in row {text!r}", f"use bN or one of {', '.join(MODIFIERS)}")
    return spec


@dataclass
class ProfileOptions:
    checkpoint_dir: Path
    ar_model_dir: str
    load_format: str = "auto"
    device: str | None = None
    compile: bool = True
    guardrail: str = "full"
    diffusion_decoder: bool | None = None
    text_encoder_dtype: str | None = None
    quantization: str = "bf16"
    ar_tokens: int = 0
    """Tokens the AR model really generates (0: all of them)."""
    dd_steps: int | None = None
    """Diffusion steps (None: the decoder's 15)."""
    workdir: Path | None = None
    policies: dict[str, dict[str, str]] = field(default_factory=dict)
    """Strategy name -> placement policy (``auto`` included, resolved by the caller)."""
    offload: bool | None = None
    """Apply placements (None: on CUDA only). Tests set True to run the moves on a CPU-only machine."""
    warmup: bool = False
    """Run one unreported row first (full offload, which fits wherever any row does), so that compiling the
    AR decode step and the diffusion blocks is not counted in the first reported row."""


def make_clip(path: Path, height: int, width: int, frames: int = 9) -> Path:
    """A 9-frame clip at the model's size: a gradient drifting sideways (decodes like real video)."""
    from cosmos_cli.io.video import write_mp4

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = np.stack([np.stack([(x + 8 * t) % 256, y % 256, (x + y) % 256], -1) for t in range(frames)])
    return write_mp4(video.astype(np.uint8), path, fps=25, overwrite=True)


def build_pipeline(spec: RowSpec, opts: ProfileOptions, workdir: Path):
    from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline

    config = PipelineConfig(
        checkpoint_dir=opts.checkpoint_dir,
        ar_model_dir=opts.ar_model_dir,
        device=opts.device,
        load_format=opts.load_format,
        compile=opts.compile,
        batch_size=spec.batch,
        guardrail="blocklist" if spec.blocklist and opts.guardrail != "off" else opts.guardrail,
        diffusion_decoder=False if spec.no_dd else opts.diffusion_decoder,
        text_encoder_dtype="fp32" if spec.fp32_t5 else opts.text_encoder_dtype,
        placements=dict(opts.policies[spec.strategy]),
        chunk_size=max(16, spec.batch),
        quantization=opts.quantization,
    )
    if opts.load_format == "dummy":
        from cosmos_cli.pipeline.standins import StandInPipeline

        return StandInPipeline(config, workdir / "standins")
    return VideoPipeline(config)


class _ARMeter:
    """Wraps the AR stage's ``generate``: caps the tokens really generated and adds up the generator's
    timings (prefill, decode, compile + CUDA-graph capture) across calls."""

    def __init__(self, stage, max_tokens: int):
        self.stage, self.max_tokens = stage, max_tokens
        self.original = stage.generate
        self.totals = self._zero()
        stage.generate = self

    @staticmethod
    def _zero() -> dict:
        return dict(prefill_s=0.0, decode_s=0.0, warmup_s=0.0, tokens=0, requested=0, calls=0, batch=0)

    def __call__(self, prompt, context, num_new, params, seeds, **callbacks):
        n = min(num_new, self.max_tokens) if self.max_tokens > 0 else num_new
        new = self.original(prompt, context, n, params, seeds, **callbacks)
        stats = getattr(self.stage.generator, "stats", None)
        t = self.totals
        for key in ("prefill_s", "decode_s", "warmup_s"):
            t[key] += getattr(stats, key, 0.0)
        t["tokens"] += n
        t["requested"] += num_new
        t["calls"] += 1
        t["batch"] = max(t["batch"], prompt.shape[0])
        if n < num_new:  # random tokens stand in for the rest: the decoders see a full-size grid
            vocab = self.stage.args.video_vocab_size
            rest = torch.randint(0, vocab, (prompt.shape[0], num_new - n), generator=torch.Generator().manual_seed(0))
            new = torch.cat([new.cpu(), rest], dim=1)
        return new

    def reset(self) -> None:
        self.totals = self._zero()


def _records(placements) -> dict:
    return {name: rec.as_dict() for name, rec in placements.records.items()}


def run_row(spec: RowSpec, opts: ProfileOptions, workdir: Path, clip: Path) -> dict:
    """Build, prepare and run one row; every failure (out of memory included) is reported in the row."""
    from cosmos_cli.pipeline.samples import Sample

    row: dict = {"row": spec.name, "strategy": spec.strategy, "batch": spec.batch, "policy": {}, "error": None}
    pipeline = None
    cuda = torch.cuda.is_available() and (opts.device or "cuda").startswith("cuda")
    try:
        free_device_memory()
        row["allocated_at_start"] = torch.cuda.memory_allocated() if cuda else 0
        pipeline = build_pipeline(spec, opts, workdir)
        placements = pipeline.placements
        if opts.offload is not None:
            placements.offload = opts.offload
        row["policy"] = {s.name: placements.placement(s) for s in pipeline.stages()}
        meter = _ARMeter(pipeline.ar, opts.ar_tokens)
        if opts.dd_steps is not None and pipeline.diffusion_decoder is not None:
            dd = pipeline.diffusion_decoder
            dd.settings = dataclasses.replace(dd.settings, num_steps=opts.dd_steps)
        start = time.perf_counter()
        for stage in pipeline.stages():
            placements.prepare(stage)
        _sync(cuda)
        row["setup_s"] = time.perf_counter() - start
        row["resident_after_setup"] = torch.cuda.memory_allocated() if cuda else 0
        row["setup_loads"] = {name: rec.loads for name, rec in placements.records.items()}
        placements.reset_records()
        samples = [Sample(f"s{i}", PROMPT, clip, seed=i) for i in range(spec.batch)]
        warm_peak = 0
        if spec.warm:
            start = time.perf_counter()
            _check(pipeline.run(samples, workdir / "warm", overwrite=True))
            row["warmup_batch_s"] = time.perf_counter() - start
            warm_peak = max((r.peak_reserved for r in placements.records.values()), default=0)
            row["warmup_ar"] = dict(meter.totals)
            placements.reset_records()
            meter.reset()
        start = time.perf_counter()
        _check(pipeline.run(samples, workdir / "run", overwrite=True))
        row["total_s"] = time.perf_counter() - start
        row["stages"] = _records(placements)
        row["ar"] = dict(meter.totals)
        row["dd_calls"] = _dd_calls(pipeline, spec.batch)
        row["peak_allocated"] = max((r["peak_allocated"] for r in row["stages"].values()), default=0)
        row["peak_reserved"] = max((r["peak_reserved"] for r in row["stages"].values()), default=0)
        row["warmup_peak_reserved"] = warm_peak
        row["full_length_s"] = _full_length(row)
    except torch.cuda.OutOfMemoryError as err:
        row["error"] = "out of memory: " + str(err).splitlines()[0][:160]
    except Exception as err:  # noqa: BLE001 - a failing row is reported, the other rows still run
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    finally:
        if pipeline is not None:
            for stage in pipeline.stages():
                pipeline.placements.release(stage)
        del pipeline
        free_device_memory()
    return row


def _check(results) -> None:
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        raise RuntimeError(f"sample {failed[0].name} {failed[0].status}: {failed[0].error}")


def _dd_calls(pipeline, batch: int) -> dict:
    """Guided denoiser calls the measured run made and a full-length run would make."""
    dd = pipeline.diffusion_decoder
    if dd is None:
        return {}
    from cosmos_cli.models.diffusion_decoder.decoder import num_windows

    windows = num_windows(pipeline.args.latent_shape[0])
    return {"made": batch * windows * dd.settings.x0_calls, "full": batch * windows * (15 + 1)}


def _full_length(row: dict) -> float:
    """The measured batch time with the AR decode and the diffusion steps scaled to full length.

    Compile and CUDA-graph capture time (``warmup_s``) is left out of the scaled AR time but stays in the
    measured total it is added to, so a row without ``warm`` over-estimates, never under-estimates.
    """
    ar = row["ar"]
    total = row["total_s"]
    if ar["tokens"] and ar["requested"] > ar["tokens"]:
        per_step = ar["decode_s"] / max(ar["tokens"] - ar["calls"], 1)
        total += per_step * (ar["requested"] - ar["tokens"])
    calls = row["dd_calls"]
    dd = row["stages"].get("diffusion_decoder")
    if calls and dd and calls["full"] > calls["made"]:
        compute = dd["seconds"] - dd["bring_in_seconds"] - dd["put_away_seconds"]
        total += compute / calls["made"] * (calls["full"] - calls["made"])
    return total


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def device_info(device: str | None) -> dict:
    """The card, its memory, and what the CUDA context takes outside PyTorch's statistics."""
    import platform

    info = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available() and (device or "cuda").startswith("cuda"):
        dev = torch.device(device or "cuda")
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info(dev)
        info.update(
            device=torch.cuda.get_device_name(dev),
            gpu_memory=total,
            context_bytes=max(total - free - torch.cuda.memory_reserved(dev), 0),
            h2d_gb_per_s=_h2d_rate(dev),
        )
    else:
        info.update(device=f"cpu ({platform.machine()})", gpu_memory=None, context_bytes=0)
    return info


def _h2d_rate(device: torch.device, nbytes: int = GIB) -> float:
    """Pinned host -> GPU copy rate, the rate every ``cpu`` bring-in runs at (the plan assumes 20 GB/s)."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    target = torch.empty(nbytes, dtype=torch.uint8, device=device)
    target.copy_(host, non_blocking=True)  # first copy: driver warm-up
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(3):
        target.copy_(host, non_blocking=True)
    torch.cuda.synchronize(device)
    rate = 3 * nbytes / (time.perf_counter() - start) / 1e9
    del host, target
    torch.cuda.empty_cache()
    return rate


def profile(rows: list[RowSpec], opts: ProfileOptions, on_row=None, on_warmup=None) -> list[dict]:
    """Measure every row in order (``on_row(result)`` after each); returns the rows' results."""
    with tempfile.TemporaryDirectory(prefix="cosmos-offload-profile-", dir=opts.workdir) as tmp:
        workdir = Path(tmp)
        args = model_args(opts)
        clip = make_clip(workdir / "clip.mp4", args.video_height, args.video_width)
        if opts.warmup:
            warm = run_row(RowSpec("all"), opts, workdir, clip)
            if on_warmup is not None:
                on_warmup(warm)
        results = []
        for spec in rows:
            result = run_row(spec, opts, workdir, clip)
            results.append(result)
            if on_row is not None:
                on_row(result)
        return results


def model_args(opts: ProfileOptions):
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.stages.ar_model import resolve_model_args

    return resolve_model_args(CheckpointLayout(Path(opts.checkpoint_dir), opts.ar_model_dir).ar_dir)


def row_shape(spec: RowSpec, opts: ProfileOptions):
    """The plan's view of a row's pipeline (batch, decoder, guardrail and T5 dtype as the row runs them)."""
    from cosmos_cli.offload.plan import shape_from_checkpoints

    guardrail = "blocklist" if spec.blocklist and opts.guardrail != "off" else opts.guardrail
    return shape_from_checkpoints(
        Path(opts.checkpoint_dir),
        opts.ar_model_dir,
        batch_size=spec.batch,
        guardrail=guardrail,
        diffusion_decoder=False if spec.no_dd else opts.diffusion_decoder,
        text_encoder_dtype="fp32" if spec.fp32_t5 else opts.text_encoder_dtype,
    )


def summarize(results: list[dict], gpu_memory: float, context_bytes: int, ar_bounds: dict[str, int]) -> dict:
    """Recommendation, batch comparisons and the full-offload checks, from the measured rows.

    ``ar_bounds``: row name -> the AR model's weights + KV cache + 2 GiB for that row's batch, the bound the
    AR stage's peak must stay under when everything else is offloaded (rows ``all`` and ``all-stream``; the
    latter's whole peak is meant to stay under it too: ``peak_within_bound``).
    """
    ok = [r for r in results if not r["error"]]
    plain = [r for r in ok if r["row"] == r["strategy"]]
    fitting = [r for r in plain if r["peak_reserved"] + context_bytes <= gpu_memory]
    best = min(fitting, key=lambda r: (r["full_length_s"], r["peak_reserved"])) if fitting else None
    summary: dict = {
        "gpu_memory": gpu_memory,
        "recommended": None if best is None else {"row": best["row"], "policy": best["policy"]},
        "by_card": {},
        "comparisons": [],
        "full_offload": [],
    }
    for card, memory in CARDS.items():
        fits = [r for r in plain if r["peak_reserved"] + context_bytes <= memory]
        summary["by_card"][card] = min(fits, key=lambda r: r["full_length_s"])["row"] if fits else None
    by_name = {r["row"]: r for r in ok}
    for row in ok:
        if row["strategy"] == "none" or "/" not in row["row"]:
            continue
        base = by_name.get("/".join(["none", *row["row"].split("/")[1:]]))
        if base is None:
            continue
        # Compiling / capturing the AR decode step is a one-time cost (and lands in whichever row first meets a
        # batch size): both sides are compared without it.
        run, ref = (r["total_s"] - r["ar"]["warmup_s"] for r in (row, base))
        full, ref_full = (r["full_length_s"] - r["ar"]["warmup_s"] for r in (row, base))
        summary["comparisons"].append({
            "row": row["row"],
            "baseline": base["row"],
            "extra_s": run - ref,
            "extra_fraction": (run - ref) / ref,
            "extra_fraction_full_length": (full - ref_full) / ref_full,
            "baseline_s": ref,
            "baseline_full_length_s": ref_full,
        })  # fmt: skip
    for row in ok:
        if row["strategy"] not in ("all", "all-stream") or row["row"] not in ar_bounds:
            continue
        stages = row["stages"]
        peak_stage = max(stages, key=lambda n: stages[n]["peak_allocated"])
        ar_peak = stages.get("ar_model", {}).get("peak_allocated", 0)
        summary["full_offload"].append({
            "row": row["row"],
            "peak_allocated": row["peak_allocated"],
            "peak_stage": peak_stage,
            "ar_stage_peak_allocated": ar_peak,
            "ar_bound": ar_bounds[row["row"]],
            "ar_stage_within_bound": ar_peak <= ar_bounds[row["row"]],
            "peak_within_bound": row["peak_allocated"] <= ar_bounds[row["row"]],
        })  # fmt: skip
    return summary


def stage_seconds(row: dict) -> dict[str, float]:
    """Seconds per stage in running order (the DV decoder use is part of ``video_tokenizer``)."""
    stages = row.get("stages") or {}
    return {name: stages[name]["seconds"] for name in STAGE_NAMES if name in stages}
