"""`cosmos-cli generate`: prompt + clip (or a JSONL batch) -> 33-frame mp4s through our own pipeline.

NVIDIA's flag names (``--input_image_or_video_path``, ``--video_save_folder``, ...) are accepted as hidden
aliases: :data:`NVIDIA_ALIASES` rewrites them before Typer parses the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli.checkpoints import DEFAULT_AR_MODEL_DIR
from cosmos_cli.commands.options import (
    DEFAULT_CHECKPOINT,
    ArModelDirOpt,
    CheckpointDirOpt,
    CompileOpt,
    DebugOpt,
    DeviceOpt,
    DisableDiffusionDecoderOpt,
    Guardrail,
    GuardrailOpt,
    LoadFormatOpt,
    OffloadAll,
    OffloadArModelOpt,
    OffloadDiffusionDecoderOpt,
    OffloadGuardrailOpt,
    OffloadOpt,
    OffloadTextEncoderOpt,
    OffloadTokenizerOpt,
    OverwriteOpt,
    PlacementOpt,
    TextEncoderDtypeOpt,
    check_text_encoder_dtype,
)
from cosmos_cli.errors import BadInput

NVIDIA_ALIASES = {
    "--input_image_or_video_path": "--input",
    "--batch_input_path": "--batch-input",
    "--video_save_folder": "--output-dir",
    "--video_save_name": "--video-save-name",
    "--ar_model_dir": "--ar-model-dir",
    "--checkpoint_dir": "--checkpoint-dir",
    "--num_input_frames": "--num-input-frames",
    "--top_p": "--top-p",
    "--disable_diffusion_decoder": "--disable-diffusion-decoder",
    "--offload_guardrail_models": "--offload-guardrail-models",
    "--offload_text_encoder_model": "--offload-text-encoder-model",
    "--offload_tokenizer": "--offload-tokenizer",
    "--offload_ar_model": "--offload-ar-model",
    "--offload_diffusion_decoder": "--offload-diffusion-decoder",
    "--input_type": "--input-type",
    "--enforce-eager": "--no-compile",
}
"""NVIDIA's ``video2world.py`` flag -> ours (README shows the table)."""

OFFLOAD_FLAGS = {
    "offload_guardrail_models": ("text_guardrail", "video_guardrail"),
    "offload_text_encoder_model": ("text_encoder",),
    "offload_tokenizer": ("video_tokenizer",),
    "offload_ar_model": ("ar_model",),
    "offload_diffusion_decoder": ("diffusion_decoder",),
}


def translate_nvidia_flags(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        out.append(NVIDIA_ALIASES.get(name, name) + (eq + value if eq else ""))
    return out


def command(
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Video or image to continue.")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Text prompt (Video2World models).")] = None,
    batch_input: Annotated[
        Path | None, typer.Option("--batch-input", help='JSONL: one {"prompt", "visual_input"} per line.')
    ] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="One sub-folder per sample.")] = Path(
        "outputs"
    ),
    video_save_name: Annotated[str | None, typer.Option("--video-save-name", help="Name of a single output.")] = None,
    checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT,
    ar_model_dir: ArModelDirOpt = DEFAULT_AR_MODEL_DIR,
    num_input_frames: Annotated[int, typer.Option("--num-input-frames", help="1 or 9 context frames.")] = 9,
    input_type: Annotated[str | None, typer.Option("--input-type", hidden=True)] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Nucleus mass; default: the model's tuned value (5B: 0.7).")
    ] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same video.")] = 0,
    disable_diffusion_decoder: DisableDiffusionDecoderOpt = False,
    diffusion_decoder: Annotated[
        bool,
        typer.Option("--diffusion-decoder", help="Require the diffusion decoder (default: used when its files exist)."),
    ] = False,
    dd_seed: Annotated[
        int | None, typer.Option("--dd-seed", help="Diffusion-decoder noise seed (default: --seed; NVIDIA: 1).")
    ] = None,
    guardrail: GuardrailOpt = Guardrail.full,
    offload: OffloadOpt = OffloadAll.none,
    offload_guardrail_models: OffloadGuardrailOpt = False,
    offload_text_encoder_model: OffloadTextEncoderOpt = False,
    offload_tokenizer: OffloadTokenizerOpt = False,
    offload_ar_model: OffloadArModelOpt = False,
    offload_diffusion_decoder: OffloadDiffusionDecoderOpt = False,
    placement: PlacementOpt = None,
    gpu_memory_budget: Annotated[
        float | None,
        typer.Option(
            "--gpu-memory-budget",
            help="GiB of GPU memory to fit: offload the stages whose moves cost least (explicit flags stay).",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Samples decoded together; 0 = from free memory.")
    ] = 0,
    compile: CompileOpt = True,
    load_format: LoadFormatOpt = "auto",
    text_encoder_dtype: TextEncoderDtypeOpt = None,
    device: DeviceOpt = None,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the written mp4.")] = 25.0,
    pad: Annotated[bool, typer.Option("--pad", help="Repeat the last frame of clips shorter than 9 frames.")] = False,
    decoding: Annotated[
        str, typer.Option("--decoding", help="sequential | scd (speculative coupled decoding, same distribution).")
    ] = "sequential",
    scd_window: Annotated[int, typer.Option("--scd-window", help="Draft tokens verified per SCD pass.")] = 32,
    gpus: Annotated[
        int, typer.Option("--gpus", help="Processes (GPUs) on this node; > 1 relaunches via torchrun.")
    ] = 1,
    tp: Annotated[
        int | None, typer.Option("--tp", help="Tensor-parallel size (1, 2, 4, 8); default from --gpus.")
    ] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Nodes (multi-node torchrun).")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", help="This node's rank.")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0.")] = None,
    rdzv_backend: Annotated[str | None, typer.Option("--rdzv-backend", help="c10d (default) or static.")] = None,
    overwrite: OverwriteOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a 33-frame continuation of a clip (or image) for a prompt, or for every line of a JSONL batch."""
    opts = dict(locals())
    samples = _samples(opts)  # bad arguments and batch files fail here, once, before any process starts
    _check_parallel(opts)
    from cosmos_cli.parallel.launch import format_command, should_relaunch, torchrun_command

    if should_relaunch(gpus, nnodes):  # this process becomes torchrun's agent; the workers do the job
        import os
        import sys

        from cosmos_cli.console import info
        from cosmos_cli.parallel.launch import relaunch

        cmd = torchrun_command(
            gpus, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, rdzv_backend=rdzv_backend,
            argv=translate_nvidia_flags(sys.argv[1:]),
        )  # fmt: skip
        if debug:
            info(f"torchrun: {format_command(cmd)}")
        os.environ[TORCHRUN_CMD_ENV] = format_command(cmd)
        relaunch(cmd, debug=debug)
        return
    _generate_here(samples, **{k: v for k, v in opts.items() if k not in _LAUNCH_ONLY})


def _decoder_choice(opts: dict) -> bool | None:
    """False: DV decoder; True: the diffusion decoder is required; None: used when its files exist."""
    if opts["disable_diffusion_decoder"] and opts["diffusion_decoder"]:
        raise BadInput("--diffusion-decoder and --disable-diffusion-decoder contradict", "pass one of them")
    if opts["disable_diffusion_decoder"]:
        return False
    return True if opts["diffusion_decoder"] else None


def _check_parallel(opts: dict) -> None:
    """Process counts and ``--tp`` checked in the launching process, before any worker starts."""
    import os
    import warnings

    if opts["gpus"] < 1 or opts["nnodes"] < 1:
        raise BadInput("--gpus and --nnodes must be at least 1", "use --gpus 1 for one GPU")
    world = int(os.environ.get("WORLD_SIZE", opts["gpus"] * opts["nnodes"]))
    tp = opts["tp"]
    if tp is None:
        return
    if tp > 1 and world == 1:
        raise BadInput(f"--tp {tp} needs {tp} or more processes", f"add --gpus {tp} (or launch under torchrun)")
    if world % tp:
        options = ", ".join(str(t) for t in range(1, world + 1) if world % t == 0)
        raise BadInput(f"--tp {tp} does not divide the {world} processes", f"use --tp {options}")
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.stages.ar_model import resolve_model_args

    with warnings.catch_warnings():  # megatron-core: "Transformer Engine and Apex are not installed"
        warnings.simplefilter("ignore")
        from cosmos_cli.parallel.tp import check_tp

    check_tp(resolve_model_args(CheckpointLayout(opts["checkpoint_dir"], opts["ar_model_dir"]).ar_dir), tp)


TORCHRUN_CMD_ENV = "COSMOS_CLI_TORCHRUN_COMMAND"
_LAUNCH_ONLY = {"gpus", "nnodes", "node_rank", "rdzv_endpoint", "rdzv_backend", "debug", "input_type"}


def _generate_here(samples: list, **opts) -> None:
    """The job of one process: alone, or as one torchrun worker (TP group member / DP share)."""
    import os

    from cosmos_cli.parallel.dist import default_tp, distributed

    tp = opts["tp"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if tp is None:
        from cosmos_cli.checkpoints import CheckpointLayout
        from cosmos_cli.stages.ar_model import resolve_model_args

        args = resolve_model_args(CheckpointLayout(opts["checkpoint_dir"], opts["ar_model_dir"]).ar_dir)
        tp = default_tp(world, len(samples), args.n_kv_heads)
    from cosmos_cli.pipeline.interrupt import Interrupted, interrupts_raise

    with distributed(tp) as ctx, interrupts_raise():
        try:
            _run(opts, samples, ctx)
        except Interrupted as stop:  # partials are gone (atomic writes' finally); say what is done
            from cosmos_cli.pipeline.interrupt import report_interrupted

            summary = _write_summary if opts["batch_input"] is not None and ctx is None else None
            report_interrupted(stop, samples, opts["output_dir"], summary)
            raise typer.Exit(stop.exit_code) from None


def _samples(opts: dict) -> list:
    from cosmos_cli.pipeline.samples import read_batch, single_sample

    input, batch_input, prompt = opts["input"], opts["batch_input"], opts["prompt"]
    if (input is None) == (batch_input is None):
        raise BadInput("give exactly one of --input or --batch-input", "see cosmos-cli generate --help")
    if input is not None:
        if prompt is None and not opts["ar_model_dir"].lower().endswith(("-4b", "-12b")):
            raise BadInput("--prompt is required for Video2World models", 'add --prompt "what happens next"')
        return [single_sample(prompt or "", input, opts["video_save_name"], opts["seed"], opts["num_input_frames"])]
    return read_batch(batch_input, opts["seed"], opts["num_input_frames"])


def _run(opts: dict, samples: list, ctx) -> None:
    import os

    from cosmos_cli.console import info, stdout, warn
    from cosmos_cli.parallel.data import shard_samples
    from cosmos_cli.parallel.link import link_for
    from cosmos_cli.pipeline.pipeline import PipelineConfig, auto_batch_size
    from cosmos_cli.pipeline.standins import open_pipeline

    text_encoder_dtype, guardrail = opts["text_encoder_dtype"], opts["guardrail"]
    check_text_encoder_dtype(text_encoder_dtype)
    if guardrail == Guardrail.off:
        from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING

        warn(GUARDRAIL_OFF_WARNING)
    all_samples = samples
    builder, device = None, opts["device"]
    if ctx is not None:
        samples = [s for _, s in shard_samples(samples, ctx.dims.dp_rank, ctx.dims.dp)]
        device = str(ctx.device)
        if ctx.dims.tp > 1:
            from functools import partial

            from cosmos_cli.parallel.tp import build_tp_model

            builder = partial(build_tp_model, tp_group=ctx.tp_group)

    placements = _placements(opts["offload"], opts["placement"], opts)
    batch_size = opts["batch_size"]
    config = PipelineConfig(
        checkpoint_dir=opts["checkpoint_dir"],
        ar_model_dir=opts["ar_model_dir"],
        device=device,
        load_format=opts["load_format"],
        compile=opts["compile"],
        batch_size=max(batch_size, 1),
        top_p=opts["top_p"],
        temperature=opts["temperature"],
        guardrail=guardrail.value,
        diffusion_decoder=_decoder_choice(opts),
        dd_seed=opts["dd_seed"],
        text_encoder_dtype=text_encoder_dtype,
        placements=placements,
        fps=opts["fps"],
        pad=opts["pad"],
        decoding=opts["decoding"],
        scd_window=opts["scd_window"],
    )
    pipeline = open_pipeline(config, model_builder=builder, link=link_for(ctx))
    tp_size = ctx.dims.tp if ctx is not None else 1
    if batch_size <= 0:
        weights = pipeline.args.num_params() * (2 if pipeline.device.type == "cuda" else 4) // tp_size
        config.batch_size = auto_batch_size(pipeline.args, max(len(samples), 1), pipeline.device, weights)
    if opts["gpu_memory_budget"] is not None:
        _fit_gpu_memory_budget(pipeline, opts["gpu_memory_budget"], placements, adjust_batch=batch_size <= 0)
    where = f"{ctx.dims.world} processes (TP {tp_size} x DP {ctx.dims.dp})" if ctx is not None else str(pipeline.device)
    info(
        f"[bold]{pipeline.args.name}[/bold] on {where}, {len(all_samples)} sample(s), batch {config.batch_size}, "
        f"decoder: {'diffusion' if pipeline.diffusion_decoder else 'DV8x16x16'}, guardrail: {guardrail.value}"
    )
    launched = os.environ.get(TORCHRUN_CMD_ENV)
    extra = {"torchrun": launched} if launched else {}
    if ctx is not None:
        extra["parallel"] = {"world": ctx.dims.world, "tp": ctx.dims.tp, "dp": ctx.dims.dp}
    results = pipeline.run(samples, opts["output_dir"], overwrite=opts["overwrite"], extra_record=extra)
    if ctx is not None:
        from cosmos_cli.parallel.dist import gather_objects

        for r in results:
            r.exception = None  # not picklable in general; the message and exit code travel
        results = [r for part in gather_objects(results, ctx) for r in part]
        order = {s.name: i for i, s in enumerate(all_samples)}
        results.sort(key=lambda r: order.get(r.name, 0))
    if opts["batch_input"] is not None and (ctx is None or ctx.dims.is_main):
        _write_summary(opts["output_dir"], results)
    _report(results, len(all_samples), ctx, stdout, warn)


def _report(results, n_samples: int, ctx, stdout, warn) -> None:
    from cosmos_cli.errors import CosmosError, DistributedError

    for result in results:
        if result.status in ("succeeded", "skipped"):
            note = " (already done; --overwrite to redo)" if result.status == "skipped" else ""
            stdout.print(f"{result.video_path}{note}", highlight=False, soft_wrap=True)
        elif n_samples > 1:  # a single sample's error is the one line the CLI prints on exit
            warn(f"{result.name}: {result.status}: {result.error}")
    failed = [r for r in results if r.status in ("failed", "blocked")]
    if not failed:
        return
    first = failed[0]
    if ctx is not None:  # every rank ends with the same code; the launcher prints one line
        raise DistributedError(f"{len(failed)} of {n_samples} sample(s) did not succeed: {first.error}",
                               exit_code=first.exit_code or 1)  # fmt: skip
    if n_samples == 1 and first.exception is not None:
        raise first.exception
    if n_samples == 1:
        raise CosmosError(first.error or "generation failed", exit_code=first.exit_code or 1)
    raise typer.Exit(first.exit_code or 1)


def _fit_gpu_memory_budget(pipeline, budget_gib: float, fixed: dict[str, str], adjust_batch: bool) -> None:
    """``--gpu-memory-budget``: the plan's fastest placement that fits (``docs/offload.md``)."""
    from cosmos_cli.console import info
    from cosmos_cli.pipeline.plan import GIB, describe, fit_budget

    if budget_gib <= 0:
        raise BadInput(f"--gpu-memory-budget must be positive, got {budget_gib}", "give GiB, e.g. 24")
    chosen = fit_budget(pipeline, budget_gib, fixed=fixed, adjust_batch=adjust_batch)
    info(
        f"placement for {budget_gib:g} GiB: {describe(chosen.policy) or 'every stage on the GPU'} "
        f"(estimated peak {chosen.peak / GIB:.1f} GiB, batch {pipeline.config.batch_size})"
    )


def _placements(offload: OffloadAll, placement: list[str] | None, flags: dict) -> dict[str, str]:
    from cosmos_cli.pipeline.offload import PLACEMENTS, STAGE_NAMES, check_placement

    chosen = dict.fromkeys(STAGE_NAMES, "cpu") if offload == OffloadAll.all else {}
    for flag, stages in OFFLOAD_FLAGS.items():
        if flags.get(flag):
            chosen.update(dict.fromkeys(stages, "cpu"))
    for item in placement or []:
        stage, _, where = item.partition("=")
        if stage not in STAGE_NAMES or where not in PLACEMENTS:
            raise BadInput(
                f"bad --placement {item!r}",
                f"use STAGE=WHERE with STAGE in {', '.join(STAGE_NAMES)} and WHERE {'|'.join(PLACEMENTS)}",
            )
        check_placement(stage, where)
        chosen[stage] = where
    return chosen


def _write_summary(output_dir: Path, results) -> None:
    from cosmos_cli.io.atomic import atomic_path

    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"samples": [r.as_dict() for r in results]}
    with atomic_path(output_dir / "summary.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
