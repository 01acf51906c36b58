"""`cosmos-cli serve`: keep the models loaded in one process and take generations over HTTP.

The server builds the same :class:`VideoPipeline` as ``generate`` (same flags, same checks: a missing
checkpoint is the same one-line error, before anything listens), binds the port, then loads the models in
its worker thread while ``/healthz`` already answers. Jobs persist under ``--jobs-dir``.
"""

from __future__ import annotations

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
    PlacementOpt,
    TextEncoderDtypeOpt,
)
from cosmos_cli.errors import BadInput
from cosmos_cli.serve.limits import DEFAULT_UPLOAD_CHECKS

LOGGER = "cosmos_cli.serve"


def command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (without a key: loopback only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port, printed in the log).")] = 8000,
    checkpoint_dir: CheckpointDirOpt = DEFAULT_CHECKPOINT,
    ar_model_dir: ArModelDirOpt = DEFAULT_AR_MODEL_DIR,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Queued jobs generated together, at most.")] = 1,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest accepted upload (MiB).")] = 200,
    jobs_dir: Annotated[
        Path, typer.Option("--jobs-dir", help="Job database, uploads and results (kept across restarts).")
    ] = Path("cosmos-jobs"),
    max_upload_checks: Annotated[
        int,
        typer.Option("--max-upload-checks", help="Uploads decoded and checked at once (each up to ~1 GiB)."),
    ] = DEFAULT_UPLOAD_CHECKS,
    api_key_file: Annotated[
        Path | None, typer.Option("--api-key-file", help="File holding the API key (else COSMOS_API_KEY).")
    ] = None,
    disable_diffusion_decoder: DisableDiffusionDecoderOpt = False,
    guardrail: GuardrailOpt = Guardrail.full,
    offload: OffloadOpt = OffloadAll.none,
    offload_guardrail_models: OffloadGuardrailOpt = False,
    offload_text_encoder_model: OffloadTextEncoderOpt = False,
    offload_tokenizer: OffloadTokenizerOpt = False,
    offload_ar_model: OffloadArModelOpt = False,
    offload_diffusion_decoder: OffloadDiffusionDecoderOpt = False,
    placement: PlacementOpt = None,
    compile: CompileOpt = True,
    load_format: LoadFormatOpt = "auto",
    text_encoder_dtype: TextEncoderDtypeOpt = None,
    device: DeviceOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve generations over HTTP: POST a clip and a prompt, poll the job, download the mp4.

    Examples:

      COSMOS_API_KEY=secret cosmos-cli serve --host 0.0.0.0 --port 8000 --checkpoint-dir checkpoints

      cosmos-cli serve --batch-size 4 --placement diffusion_decoder=cpu    (127.0.0.1, no key)
    """
    from cosmos_cli.request import pipeline_config
    from cosmos_cli.serve.auth import load_api_key, require_key_for

    if not 0 <= port <= 65535:
        raise BadInput(f"--port {port} is not a TCP port", "use 0 to 65535, e.g. --port 8000; 0 picks a free port")
    if max_upload_checks < 1:
        raise BadInput(f"--max-upload-checks must be at least 1, got {max_upload_checks}", "use e.g. 2")
    from cosmos_cli.io.atomic import check_writable_folder

    check_writable_folder(jobs_dir, "--jobs-dir")  # before the models load
    if max_upload_mb <= 0:
        raise BadInput(f"--max-upload-mb must be positive, got {max_upload_mb}", "use e.g. 200")
    config = pipeline_config(  # the same builder and checks as `generate`
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
        checkpoint_dir=checkpoint_dir,
        ar_model_dir=ar_model_dir,
        device=device,
        load_format=load_format,
        compile=compile,
        batch_size=batch_size,
        guardrail=guardrail.value,
        text_encoder_dtype=text_encoder_dtype,
    )
    api_key = load_api_key(api_key_file)
    require_key_for(host, api_key)
    # Per-token progress bars would flood a server log; the API reports progress instead.
    from cosmos_cli.console import disable_progress

    disable_progress()
    if guardrail == Guardrail.off:
        from cosmos_cli.console import warn
        from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING

        warn(GUARDRAIL_OFF_WARNING)

    from cosmos_cli.pipeline.standins import open_pipeline

    pipeline = open_pipeline(config)
    _serve(pipeline, host, port, jobs_dir, batch_size, int(max_upload_mb * 2**20), api_key, max_upload_checks)


def _serve(
    pipeline, host: str, port: int, jobs_dir: Path, batch_size: int, max_upload: int, api_key, upload_checks: int
) -> None:
    import logging

    import uvicorn

    from cosmos_cli.serve.app import ServeSettings, create_app
    from cosmos_cli.serve.jobs import JobStore
    from cosmos_cli.serve.worker import GenerationWorker

    sock = _bind(host, port)
    lock = _lock_jobs_dir(jobs_dir, sock)  # before recover(): a second server must touch nothing
    _configure_logging()
    log = logging.getLogger(LOGGER)
    store = JobStore(jobs_dir)
    recovery = store.recover()
    if recovery.requeued or recovery.failed:
        log.info(
            "jobs dir %s: %d interrupted job(s) queued again, %d failed after %s",
            jobs_dir, len(recovery.requeued), len(recovery.failed), "too many attempts",
        )  # fmt: skip
    if api_key is None:
        log.warning("no API key (COSMOS_API_KEY / --api-key-file): anyone on this machine can use the server")
    fatal: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(err: BaseException) -> None:
        fatal.append(err)
        if server is not None:
            server.should_exit = True

    worker = GenerationWorker(pipeline, store, batch_size, log, on_fatal)
    settings = ServeSettings(
        api_key=api_key,
        max_upload_bytes=max_upload,
        input_height=pipeline.args.video_height,
        input_width=pipeline.args.video_width,
        prompt_required=pipeline.text_encoder is not None,
        model=pipeline.args.name,
        device=str(pipeline.device),
        batch_size=batch_size,
        max_upload_checks=upload_checks,
    )
    app = create_app(store, worker, settings)
    config = uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=15)
    server = uvicorn.Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d (API docs at /docs), jobs in %s", bound_host, bound_port, jobs_dir)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()
        lock.release()
    if fatal:
        raise fatal[0]


def _lock_jobs_dir(jobs_dir: Path, sock):
    """Hold ``jobs_dir`` for this server's life (``serve/dirlock.py``); a second server exits 2 here."""
    from cosmos_cli.serve.dirlock import JobsDirLock

    lock = JobsDirLock(jobs_dir)
    try:
        lock.acquire()
    except BaseException:
        sock.close()
        raise
    return lock


def _bind(host: str, port: int):
    """Bind before loading anything, so a busy port is a one-line error, not a traceback after minutes."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as err:  # OverflowError: a port outside 0-65535
        sock.close()
        reason = getattr(err, "strerror", None) or str(err)
        raise BadInput(f"cannot listen on {host}:{port}: {reason}", "choose another --port or --host") from err
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _configure_logging() -> None:
    """uvicorn's log format for its own messages and ours (one stream: stderr)."""
    import copy
    import logging.config

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][LOGGER] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    logging.config.dictConfig(config)
