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
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Samples decoded together; 0 = from free memory.")
    ] = 0,
    compile: CompileOpt = True,
    load_format: LoadFormatOpt = "auto",
    text_encoder_dtype: TextEncoderDtypeOpt = None,
    device: DeviceOpt = None,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the written mp4.")] = 25.0,
    pad: Annotated[bool, typer.Option("--pad", help="Repeat the last frame of clips shorter than 9 frames.")] = False,
    overwrite: OverwriteOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a 33-frame continuation of a clip (or image) for a prompt, or for every line of a JSONL batch."""
    from cosmos_cli.console import info, stdout, warn
    from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline, auto_batch_size
    from cosmos_cli.pipeline.samples import read_batch, single_sample

    if (input is None) == (batch_input is None):
        raise BadInput("give exactly one of --input or --batch-input", "see cosmos-cli generate --help")
    check_text_encoder_dtype(text_encoder_dtype)
    if input is not None:
        if prompt is None and not ar_model_dir.lower().endswith(("-4b", "-12b")):
            raise BadInput("--prompt is required for Video2World models", 'add --prompt "what happens next"')
        samples = [single_sample(prompt or "", input, video_save_name, seed, num_input_frames)]
    else:
        samples = read_batch(batch_input, seed, num_input_frames)
    if guardrail == Guardrail.off:
        from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING

        warn(GUARDRAIL_OFF_WARNING)

    placements = _placements(offload, placement, locals())
    config = PipelineConfig(
        checkpoint_dir=checkpoint_dir,
        ar_model_dir=ar_model_dir,
        device=device,
        load_format=load_format,
        compile=compile,
        batch_size=max(batch_size, 1),
        top_p=top_p,
        temperature=temperature,
        guardrail=guardrail.value,
        diffusion_decoder=False if disable_diffusion_decoder else None,
        dd_seed=dd_seed,
        text_encoder_dtype=text_encoder_dtype,
        placements=placements,
        fps=fps,
        pad=pad,
    )
    pipeline = VideoPipeline(config)
    if batch_size <= 0:
        weights = pipeline.args.num_params() * (2 if pipeline.device.type == "cuda" else 4)
        config.batch_size = auto_batch_size(pipeline.args, len(samples), pipeline.device, weights)
    info(
        f"[bold]{pipeline.args.name}[/bold] on {pipeline.device}, {len(samples)} sample(s), batch {config.batch_size}, "
        f"decoder: {'diffusion' if pipeline.diffusion_decoder else 'DV8x16x16'}, guardrail: {guardrail.value}"
    )
    results = pipeline.run(samples, output_dir, overwrite=overwrite)
    if batch_input is not None:
        _write_summary(output_dir, results)
    for result in results:
        if result.status in ("succeeded", "skipped"):
            note = " (already done; --overwrite to redo)" if result.status == "skipped" else ""
            stdout.print(f"{result.video_path}{note}", highlight=False, soft_wrap=True)
        else:
            warn(f"{result.name}: {result.status}: {result.error}")
    failed = [r for r in results if r.status in ("failed", "blocked")]
    if failed:
        first = failed[0]
        if len(samples) == 1 and first.exception is not None and not _is_user_error(first.exception):
            raise first.exception
        if len(samples) == 1:
            raise first.exception
        raise typer.Exit(first.exit_code or 1)


def _is_user_error(exc: BaseException) -> bool:
    from cosmos_cli.errors import CosmosError

    return isinstance(exc, CosmosError)


def _placements(offload: OffloadAll, placement: list[str] | None, flags: dict) -> dict[str, str]:
    from cosmos_cli.pipeline.offload import PLACEMENTS, STAGE_NAMES

    chosen = dict.fromkeys(STAGE_NAMES, "cpu") if offload == OffloadAll.all else {}
    for flag, stages in OFFLOAD_FLAGS.items():
        if flags.get(flag):
            chosen.update(dict.fromkeys(stages, "cpu"))
    for item in placement or []:
        stage, _, where = item.partition("=")
        if stage not in STAGE_NAMES or where not in PLACEMENTS:
            raise BadInput(
                f"bad --placement {item!r}",
                f"use STAGE=WHERE with STAGE in {', '.join(STAGE_NAMES)} and WHERE gpu|cpu|disk",
            )
        chosen[stage] = where
    return chosen


def _write_summary(output_dir: Path, results) -> None:
    from cosmos_cli.io.atomic import atomic_path

    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"samples": [r.as_dict() for r in results]}
    with atomic_path(output_dir / "summary.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
