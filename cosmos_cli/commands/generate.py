"""`cosmos-cli generate`: prompt + clip (or a JSONL batch) -> 33-frame mp4s through our own pipeline.

NVIDIA's flag names (``--input_image_or_video_path``, ``--video_save_folder``, ...) are accepted as hidden
aliases: :data:`NVIDIA_ALIASES` rewrites them before Typer parses the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli import settings
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


def translate_nvidia_flags(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        out.append(NVIDIA_ALIASES.get(name, name) + (eq + value if eq else ""))
    return out


def command(
    ctx: typer.Context,
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
    num_frames: Annotated[
        int, typer.Option("--num-frames", help="Output frames: 33 + 24k up to 273, by chunks (docs/long-videos.md).")
    ] = 33,
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
    crf: Annotated[
        int, typer.Option("--crf", help="H.264 quality of the mp4: 0 (lossless) to 51; 23 is NVIDIA's.")
    ] = 23,
    pad: Annotated[bool, typer.Option("--pad", help="Repeat the last frame of clips shorter than 9 frames.")] = False,
    decoding: Annotated[
        str, typer.Option("--decoding", help="sequential | scd (speculative coupled decoding, same distribution).")
    ] = "sequential",
    scd_window: Annotated[int, typer.Option("--scd-window", help="Draft tokens verified per SCD pass (1-128).")] = 32,
    quantization: Annotated[
        str, typer.Option("--quantization", help="AR weights: bf16 | int8 | fp8 (weight-only, lossy; fp8: sm_89+).")
    ] = "bf16",
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
    backend: Annotated[
        str, typer.Option("--backend", help="cosmos-cli (ours) | nemo (NVIDIA's NeMo script, in its container).")
    ] = "cosmos-cli",
    cosmos_repo: Annotated[
        Path | None,
        typer.Option("--cosmos-repo", help="--backend nemo: NVIDIA's Cosmos checkout (default: $COSMOS_REPO_DIR, .)"),
    ] = None,
    overwrite: OverwriteOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a 33-frame continuation of a clip (or image) for a prompt, or for every line of a JSONL batch."""
    from cosmos_cli.request import GenerateRequest, LaunchRequest, SampleRequest, pipeline_config, validate

    # Every flag becomes one typed request, checked once, before any process starts or any model loads.
    config = pipeline_config(
        offload_all=offload == OffloadAll.all,
        offload_flags={
            "offload_guardrail_models": offload_guardrail_models,
            "offload_text_encoder_model": offload_text_encoder_model,
            "offload_tokenizer": offload_tokenizer,
            "offload_ar_model": offload_ar_model,
            "offload_diffusion_decoder": offload_diffusion_decoder,
        },
        placement=placement,
        disable_diffusion_decoder=disable_diffusion_decoder,
        require_diffusion_decoder=diffusion_decoder,
        checkpoint_dir=checkpoint_dir,
        ar_model_dir=ar_model_dir,
        device=device,
        load_format=load_format,
        compile=compile,
        batch_size=max(batch_size, 1),
        top_p=top_p,
        temperature=temperature,
        guardrail=guardrail.value,
        dd_seed=dd_seed,
        text_encoder_dtype=text_encoder_dtype,
        fps=fps,
        pad=pad,
        decoding=decoding,
        scd_window=scd_window,
        quantization=quantization,
    )
    defaults = validate(SampleRequest(prompt=prompt or "", visual_input=input, seed=seed,
                                      num_input_frames=num_input_frames, num_frames=num_frames, crf=crf,
                                      name=video_save_name))  # fmt: skip
    request = validate(
        GenerateRequest(
            samples=_samples(defaults, input, batch_input, prompt, config),
            pipeline=config,
            output_dir=output_dir,
            batch_input=batch_input,
            batch_size=None if batch_size == 0 else batch_size,
            gpu_memory_budget=gpu_memory_budget,
            overwrite=overwrite,
            launch=LaunchRequest(gpus, tp, nnodes, node_rank, rdzv_endpoint, rdzv_backend),
            backend=backend,
            cosmos_repo=cosmos_repo,
            given_flags=_given_flags(ctx),
        )
    )
    if request.backend == "nemo":  # NVIDIA's script runs it (cosmos_cli/nemo/backend.py)
        from cosmos_cli.nemo.backend import run_nemo

        run_nemo(request)
        return
    if cosmos_repo is not None:
        raise BadInput("--cosmos-repo is for --backend nemo (NVIDIA's NeMo script)", "add --backend nemo, or drop it")
    _check_parallel(request)
    from cosmos_cli.io.atomic import check_writable_folder

    check_writable_folder(request.output_dir)  # a file on its path or /proc: one line now, not after the run
    if input is not None:  # one input: a picture too large is refused before the models load
        from cosmos_cli.io.video import check_input_size

        check_input_size(input)
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
        from cosmos_cli.pipeline.interrupt import launcher_interruptible

        with launcher_interruptible(request, _write_summary):  # Ctrl-C / SIGTERM: 130 / 143 and a summary
            relaunch(cmd, debug=debug)
        return
    _generate_here(request)


def _given_flags(ctx: typer.Context) -> frozenset[str]:
    """The parameters set on the command line (or the environment), not left at their defaults."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    defaulted = (None, "DEFAULT", "DEFAULT_MAP")
    return frozenset(name for name, src in sources.items() if getattr(src, "name", None) not in defaulted)


def _samples(defaults, input: Path | None, batch_input: Path | None, prompt: str | None, config) -> list:
    """The samples of the command: the one ``--input``, or every line of ``--batch-input``."""
    from cosmos_cli.request import SampleRequest, needs_prompt, read_jsonl

    if (input is None) == (batch_input is None):
        raise BadInput("give exactly one of --input or --batch-input", "see cosmos-cli generate --help")
    if input is not None:
        if prompt is None and needs_prompt(config.checkpoint_dir, config.ar_model_dir):
            raise BadInput("--prompt is required for Video2World models", 'add --prompt "what happens next"')
        return [defaults]
    line_defaults = SampleRequest(seed=defaults.seed, num_input_frames=defaults.num_input_frames,
                                  num_frames=defaults.num_frames, crf=defaults.crf)  # fmt: skip
    return read_jsonl(batch_input, line_defaults)


def _check_parallel(request) -> None:
    """Process counts and ``--tp`` checked in the launching process, before any worker starts. The model's
    own TP sizes come first, so that every hint names a value that the next check accepts too."""
    import warnings

    launch = request.launch
    world = settings.world_size(launch.gpus * launch.nnodes)
    tp = launch.tp
    if tp is None:
        return
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.stages.ar_model import resolve_model_args

    with warnings.catch_warnings():  # megatron-core: "Transformer Engine and Apex are not installed"
        warnings.simplefilter("ignore")
        from cosmos_cli.parallel.tp import valid_tp_sizes

    config = request.pipeline
    args = resolve_model_args(CheckpointLayout(config.checkpoint_dir, config.ar_model_dir).ar_dir)
    valid = valid_tp_sizes(args)
    fitting = ", ".join(str(t) for t in valid if world % t == 0)  # 1 always fits
    if tp not in valid:  # --tp 3 on an 8-head model
        hint = f"use --tp {fitting} with {world} processes" if world > 1 else (
            f"use --tp {', '.join(map(str, valid))} with --gpus set to the same number")  # fmt: skip
        raise BadInput(f"--tp {tp} cannot split {args.name} ({args.n_kv_heads} KV heads)", hint)
    if tp > 1 and world == 1:
        raise BadInput(f"--tp {tp} needs {tp} or more processes", f"add --gpus {tp} (or launch under torchrun)")
    if world % tp:
        raise BadInput(f"--tp {tp} does not divide the {world} processes", f"use --tp {fitting}")


TORCHRUN_CMD_ENV = settings.ENV_TORCHRUN_COMMAND


def _generate_here(request) -> None:
    """The job of one process: alone, or as one torchrun worker (TP group member / DP share)."""

    from cosmos_cli.parallel.dist import default_tp, distributed

    tp = request.launch.tp
    world = settings.world_size()
    if tp is None:
        from cosmos_cli.checkpoints import CheckpointLayout
        from cosmos_cli.stages.ar_model import resolve_model_args

        config = request.pipeline
        args = resolve_model_args(CheckpointLayout(config.checkpoint_dir, config.ar_model_dir).ar_dir)
        tp = default_tp(world, len(request.samples), args.n_kv_heads)
    from cosmos_cli.pipeline.interrupt import interruptible

    with distributed(tp) as ctx, interruptible(request, ctx, _write_summary):  # Ctrl-C / SIGTERM: 130 / 143
        _run(request, ctx)


def _run(request, ctx) -> None:

    from cosmos_cli.console import info, stdout, warn
    from cosmos_cli.parallel.data import shard_samples
    from cosmos_cli.parallel.link import link_for
    from cosmos_cli.pipeline.build import open_pipeline
    from cosmos_cli.pipeline.pipeline import auto_batch_size
    from cosmos_cli.quant.sizes import ar_weight_bytes

    config = request.pipeline
    if config.guardrail == Guardrail.off.value:
        from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING

        warn(GUARDRAIL_OFF_WARNING)
    samples = all_samples = request.to_samples()
    builder = None
    if ctx is not None:
        samples = [s for _, s in shard_samples(samples, ctx.dims.dp_rank, ctx.dims.dp)]
        config.device = str(ctx.device)
        if ctx.dims.tp > 1:
            from functools import partial

            from cosmos_cli.parallel.tp import build_tp_model

            builder = partial(build_tp_model, tp_group=ctx.tp_group)

    pipeline = open_pipeline(config, model_builder=builder, link=link_for(ctx))
    tp_size = ctx.dims.tp if ctx is not None else 1
    auto_batch = request.batch_size is None
    if auto_batch:
        weights = ar_weight_bytes(pipeline.args, config.quantization, 2 if pipeline.device.type == "cuda" else 4)
        weights //= tp_size
        config.batch_size = auto_batch_size(pipeline.args, max(len(samples), 1), pipeline.device, weights)
    if request.gpu_memory_budget is not None:
        _fit_gpu_memory_budget(pipeline, request.gpu_memory_budget, config.placements, adjust_batch=auto_batch)
    where = f"{ctx.dims.world} processes (TP {tp_size} x DP {ctx.dims.dp})" if ctx is not None else str(pipeline.device)
    info(
        f"[bold]{pipeline.args.name}[/bold] on {where}, {len(all_samples)} sample(s), batch {config.batch_size}, "
        f"decoder: {'diffusion' if pipeline.diffusion_decoder else 'DV8x16x16'}, guardrail: {config.guardrail}"
    )
    launched = settings.torchrun_command()
    extra = {"torchrun": launched} if launched else {}
    if ctx is not None:
        extra["parallel"] = {"world": ctx.dims.world, "tp": ctx.dims.tp, "dp": ctx.dims.dp}
        if pipeline.dd_parallel is not None and pipeline.diffusion_decoder is not None:
            dd = pipeline.dd_parallel.dims
            extra["parallel"]["diffusion_decoder"] = {"cfg": dd.cfg, "sp": dd.sp}
    from cosmos_cli.pipeline.interrupt import raise_if_interrupted

    results = pipeline.run(samples, request.output_dir, overwrite=request.overwrite, extra_record=extra,
                           should_stop=raise_if_interrupted, on_event=raise_if_interrupted)  # fmt: skip
    if ctx is not None:
        from cosmos_cli.parallel.dist import gather_objects

        for r in results:
            r.exception = None  # not picklable in general; the message and exit code travel
        results = [r for part in gather_objects(results, ctx) for r in part]
        order = {s.name: i for i, s in enumerate(all_samples)}
        results.sort(key=lambda r: order.get(r.name, 0))
    if request.writes_summary and (ctx is None or ctx.dims.is_main):
        _write_summary(request.output_dir, results)
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
    from cosmos_cli.offload.plan import GIB, describe, fit_budget

    chosen = fit_budget(pipeline, budget_gib, fixed=fixed, adjust_batch=adjust_batch)
    pipeline.apply_placement(chosen.policy, batch_size=chosen.batch_size)
    info(
        f"placement for {budget_gib:g} GiB: {describe(chosen.policy) or 'every stage on the GPU'} "
        f"(estimated peak {chosen.estimate.peak / GIB:.1f} GiB, batch {chosen.batch_size})"
    )


def _write_summary(output_dir: Path, results, **extra) -> None:
    from cosmos_cli.io.atomic import atomic_path

    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"samples": [r.as_dict() for r in results], **extra}
    with atomic_path(output_dir / "summary.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
