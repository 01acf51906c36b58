"""`cosmos-cli offload-profile`: GPU memory and time of each offloading strategy, measured or estimated.

On a GPU it runs the pipeline (real checkpoints, or ``--load-format dummy``: random weights at the released
shapes) once per row and prints peak allocated / reserved memory and seconds per stage next to the plan's
estimate and NVIDIA's published figure; ``--plan`` prints the estimate alone and needs no GPU. Both
recommend the fastest strategy that fits the card (or ``--gpu-memory``) and can write the table as JSON.
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
    TextEncoderDtypeOpt,
    check_text_encoder_dtype,
)
from cosmos_cli.errors import BadInput


def command(
    plan: Annotated[bool, typer.Option("--plan", help="Estimate from model sizes only (no GPU needed).")] = False,
    gpu_memory: Annotated[
        float | None, typer.Option("--gpu-memory", help="GiB to fit (default: this GPU's memory).", min=1)
    ] = None,
    host_memory: Annotated[
        float | None, typer.Option("--host-memory", help="GiB of free host RAM (default: this machine's).", min=1)
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option("--rows", help="Comma-separated rows, e.g. none,all,all-but-ar/b4/warm (see docs/offload.md)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per batch for --plan.", min=1)] = 1,
    ar_tokens: Annotated[
        int, typer.Option("--ar-tokens", help="Tokens the AR model really generates per row (0 = all).", min=0)
    ] = 0,
    dd_steps: Annotated[
        int | None, typer.Option("--dd-steps", help="Diffusion steps per row (default 15).", min=1)
    ] = None,
    warmup: Annotated[
        bool,
        typer.Option("--warmup/--no-warmup", help="One unreported full-offload row first (compiles); GPU only."),
    ] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the table as Markdown here (for docs).")
    ] = None,
    checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT,
    ar_model_dir: ArModelDirOpt = DEFAULT_AR_MODEL_DIR,
    load_format: LoadFormatOpt = "auto",
    guardrail: GuardrailOpt = Guardrail.full,
    disable_diffusion_decoder: DisableDiffusionDecoderOpt = False,
    text_encoder_dtype: TextEncoderDtypeOpt = None,
    compile: CompileOpt = True,
    device: DeviceOpt = None,
    quantization: Annotated[
        str, typer.Option("--quantization", help="AR weights: bf16 | int8 | fp8 (as generate --quantization).")
    ] = "bf16",
    debug: DebugOpt = False,
) -> None:
    """Measure (or with --plan, estimate) GPU memory and time of each offloading strategy; recommend one."""
    import torch

    from cosmos_cli.offload import plan as planning

    check_text_encoder_dtype(text_encoder_dtype)
    from cosmos_cli.quant.linear import check_quantization

    check_quantization(quantization, device, name_only=plan)  # a plan may be for another card
    if load_format not in ("auto", "dummy"):
        raise BadInput(f"unknown --load-format {load_format!r}", "use auto or dummy")
    on_gpu = device_is_cuda(device)
    if not plan and not on_gpu and device != "cpu":
        raise BadInput(
            "no CUDA GPU here: offload-profile measures GPU memory",
            "add --plan for an estimate, or run on a GPU machine",
        )
    if gpu_memory is not None:
        budget = gpu_memory * planning.GIB
    elif on_gpu:
        budget = torch.cuda.get_device_properties(torch.device(device or "cuda")).total_memory
    elif plan:
        raise BadInput("--plan without a GPU needs --gpu-memory", "add e.g. --gpu-memory 24")
    else:
        budget = float("inf")  # a CPU run measures times only
    host = host_memory * planning.GIB if host_memory else None
    base = planning.shape_from_checkpoints(
        checkpoint_dir,
        ar_model_dir,
        batch_size=batch_size,
        guardrail=guardrail.value,
        diffusion_decoder=False if disable_diffusion_decoder else None,
        text_encoder_dtype=text_encoder_dtype,
        quantization=quantization,
    )
    sizes = planning.stage_sizes(base)
    from cosmos_cli.offload.profile_view import measured_view, plan_view

    if plan:
        report = _plan_report(sizes, base, budget, host)
        view = plan_view(report)
    else:

        def save(partial: dict) -> None:  # after every row: a run cut short keeps what it measured
            _write_json(json_path, partial)
            if markdown_path is not None:
                _write_text(markdown_path, measured_view(partial).markdown())

        report = _measure(locals(), sizes, base, budget, host, save)
        view = measured_view(report)
    view.show()
    _write_json(json_path, report)
    if markdown_path is not None:
        _write_text(markdown_path, view.markdown())


def _write_json(path: Path | None, report: dict) -> None:
    """Atomically (re)write the report; the measured run rewrites it after every row, so a run cut short
    still leaves the rows it finished (``"partial": true``)."""
    if path is not None:
        _write_text(path, json.dumps(report, indent=1, default=str))


def _write_text(path: Path, text: str) -> None:
    from cosmos_cli.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        Path(tmp).write_text(text)


# ---- --plan ------------------------------------------------------------------------------------
def _plan_report(sizes, shape, budget: float, host: float | None) -> dict:
    from cosmos_cli.offload import plan as planning
    from cosmos_cli.offload.placements import available_host_bytes

    rows = planning.plan_rows(shape, sizes, budget, host)
    fitting = [r for r in rows if r.fits and r.strategy != "auto"]
    best = next((r for r in rows if r.strategy == "auto"), None)
    return {
        "kind": "estimate",
        "model": shape.args.name,
        "batch_size": shape.batch_size,
        "gpu_memory_gib": budget / planning.GIB,
        "assumptions": {
            "h2d_gb_per_s": planning.H2D_BYTES_PER_S / 1e9,
            "disk_gb_per_s": planning.DISK_BYTES_PER_S / 1e9,
            "reserved_factor": planning.RESERVED_FACTOR,
            "cuda_context_gib": planning.CUDA_CONTEXT_BYTES / planning.GIB,
        },
        "stages": [s.as_dict() for s in sizes],
        "rows": [r.as_dict() for r in rows],
        "fastest_nvidia_strategy_that_fits": fitting[0].strategy if fitting else None,
        "host_memory_gib": (host if host is not None else available_host_bytes()) / planning.GIB,
        "recommended": None
        if best is None
        else {"policy": best.estimate.policy, "flags": _flags(best.estimate.policy)},
    }


def _flags(policy: dict) -> str:
    """``generate`` flags for a policy: NVIDIA's names where they match, ``--placement`` otherwise."""
    from cosmos_cli.request import OFFLOAD_FLAGS

    remaining = {k: v for k, v in policy.items() if v != "gpu"}
    if remaining and len(remaining) == len(policy) and set(remaining.values()) == {"cpu"}:
        return "--offload all"
    flags = []
    for flag, stages in OFFLOAD_FLAGS.items():
        present = [s for s in stages if s in policy]
        if present and all(remaining.get(s) == "cpu" for s in present):
            flags.append("--" + flag.replace("_", "-"))
            for s in present:
                remaining.pop(s)
    flags += [f"--placement {k}={v}" for k, v in remaining.items()]
    return " ".join(flags) or "(no offload flags)"


# ---- measured ----------------------------------------------------------------------------------
def _measure(params: dict, sizes, base, budget: float, host: float | None, save) -> dict:
    from cosmos_cli.console import info
    from cosmos_cli.offload import plan as planning
    from cosmos_cli.offload import profile as prof

    args = base.args
    names = [s.name for s in planning.strategies_for(args)] + ["auto"]
    specs = [prof.parse_row(text, names) for text in (params["rows"] or ",".join(prof.DEFAULT_ROWS)).split(",")]
    policies = {s.name: s.policy() for s in planning.strategies_for(args)}
    if any(s.strategy == "auto" for s in specs):
        policies["auto"] = planning.choose_placements(sizes, budget, host_bytes_free=host).policy
    opts = prof.ProfileOptions(
        checkpoint_dir=params["checkpoint_dir"],
        ar_model_dir=params["ar_model_dir"],
        load_format=params["load_format"],
        device=params["device"],
        compile=params["compile"],
        guardrail=params["guardrail"].value,
        diffusion_decoder=False if params["disable_diffusion_decoder"] else None,
        text_encoder_dtype=params["text_encoder_dtype"],
        quantization=params["quantization"],
        ar_tokens=params["ar_tokens"],
        dd_steps=params["dd_steps"],
        policies=policies,
        warmup=params["warmup"] and params["compile"] and device_is_cuda(params["device"]),
    )
    device = prof.device_info(params["device"])
    estimates, ar_bounds = {}, {}
    for spec in specs:
        row_sizes = planning.stage_sizes(prof.row_shape(spec, opts))
        estimates[spec.name] = planning.estimate(row_sizes, policies[spec.strategy])
        ar = next(s for s in row_sizes if s.name == "ar_model")
        ar_bounds[spec.name] = ar.weights + args.kv_cache_bytes(spec.batch) + 2 * planning.GIB
    info(f"offload-profile: {len(specs)} rows on {device['device']} ({params['load_format']} weights)")
    nvidia = planning.published(args)
    report = {
        "kind": "measured",
        "partial": True,
        "model": args.name,
        "load_format": params["load_format"],
        "ar_tokens": params["ar_tokens"],
        "dd_steps": params["dd_steps"],
        **device,
        "stages_plan": [s.as_dict() for s in sizes],
        "rows": [],
    }

    def on_row(row: dict) -> None:
        est = estimates[row["row"]]
        row.update(plan_peak=est.peak, plan_peak_stage=est.peak_stage, nvidia=nvidia.get(row["row"]))
        if not planning.comparable_to_published(base):
            row["nvidia"] = None
        report["rows"].append(row)
        info(_row_line(row))
        save(report)

    def on_warmup(row: dict) -> None:
        report["warmup"] = row
        info(f"  warm-up ({row['row']}, not reported): " + (row["error"] or f"{row['total_s']:.1f} s"))

    if opts.warmup:
        policies.setdefault("all", dict.fromkeys(planning.STAGE_NAMES, "cpu"))
    prof.profile(specs, opts, on_row=on_row, on_warmup=on_warmup)
    report["summary"] = prof.summarize(report["rows"], budget, device["context_bytes"], ar_bounds)
    report["partial"] = False
    return report


def device_is_cuda(device: str | None) -> bool:
    import torch

    return torch.cuda.is_available() and (device or "cuda").startswith("cuda")


def _row_line(row: dict) -> str:
    if row["error"]:
        return f"  {row['row']}: [red]{row['error']}[/red]"
    return (
        f"  {row['row']}: peak {row['peak_allocated'] / 2**30:.1f} GiB allocated, "
        f"{row['peak_reserved'] / 2**30:.1f} reserved, {row['total_s']:.1f} s"
    )
