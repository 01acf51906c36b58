"""The FastAPI app: routes over a :class:`JobStore` and a :class:`GenerationWorker`, nothing else.

Routes only accept, list, cancel and hand out jobs; the worker thread does all generation. Every error is
``{"error": {"code", "message"}}``; every route but ``/healthz`` (and the API description at ``/docs`` and
``/openapi.json``, which hold no data) needs the bearer key.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from cosmos_cli import __version__
from cosmos_cli.pipeline.long_video import MAX_NUM_FRAMES
from cosmos_cli.serve.auth import BearerAuth
from cosmos_cli.serve.errors import ApiError, error_body
from cosmos_cli.serve.jobs import Job, JobFinished, JobStore
from cosmos_cli.serve.limits import DEFAULT_UPLOAD_CHECKS, CheckSlots
from cosmos_cli.serve.uploads import FILE_FIELD, check_visual_input, commit_upload, job_params, receive_form
from cosmos_cli.serve.worker import GenerationWorker

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
SHUTDOWN_WAIT_S = 10.0
"""How long shutdown waits for the running batch to reach a stage boundary; after that it runs again at
the next start."""


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None
    max_upload_bytes: int
    input_height: int
    input_width: int
    prompt_required: bool
    model: str
    device: str
    batch_size: int
    max_upload_checks: int = DEFAULT_UPLOAD_CHECKS
    """Uploads decoded (checked) at once; the others wait (``serve/limits.py``)."""


# ---- response bodies (also the OpenAPI schema at /docs) ---------------------------------------------
class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Progress(BaseModel):
    done: int
    total: int
    """Of the current ``stage``: tokens for ``ar_model``, samples or steps for the others."""


class GenerationParams(BaseModel):
    prompt: str
    seed: int
    top_p: float | None
    temperature: float | None
    num_input_frames: int
    num_frames: int = 33
    disable_diffusion_decoder: bool
    filename: str


class Generation(BaseModel):
    id: str
    status: Status
    stage: str | None
    progress: Progress
    error: ErrorDetail | None
    timings: dict[str, float]
    created_at: str
    started_at: str | None
    finished_at: str | None
    decoder: str | None
    params: GenerationParams


class GenerationCreated(BaseModel):
    id: str
    status: Literal["queued"]


class GenerationList(BaseModel):
    generations: list[Generation]


class Health(BaseModel):
    status: str
    version: str


class UploadChecks(BaseModel):
    limit: int
    running: int
    peak: int


class Ready(Health):
    model: str
    device: str
    batch_size: int
    upload_checks: UploadChecks


def _generation(job: Job) -> Generation:
    timings = dict(job.timings)
    if job.started_at:
        timings["queued_s"] = _seconds(job.created_at, job.started_at)
        if job.finished_at:
            timings["run_s"] = _seconds(job.started_at, job.finished_at)
    return Generation(
        id=job.id,
        status=job.status,
        stage=job.stage,
        progress=Progress(done=job.progress_done, total=job.progress_total),
        error=ErrorDetail(code=job.error_code, message=job.error_message or "") if job.error_code else None,
        timings=timings,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        decoder=job.decoder,
        params=GenerationParams(**vars(job.params)),
    )


def _seconds(start: str, end: str) -> float:
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


_ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 404)}
_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {"type": "string", "format": "binary", "description": "A video or an image."},
                        "prompt": {"type": "string", "description": "What happens next (Video2World models)."},
                        "seed": {"type": "integer", "default": 0},
                        "top_p": {"type": "number", "description": "Default: the model's tuned value."},
                        "temperature": {"type": "number", "default": 1.0},
                        "num_input_frames": {"type": "integer", "enum": [1, 9], "default": 9},
                        "num_frames": {
                            "type": "integer",
                            "default": 33,
                            "minimum": 33,
                            "maximum": MAX_NUM_FRAMES,
                            "description": "33 + 24k: longer videos by chunks (docs/long-videos.md).",
                        },
                        "disable_diffusion_decoder": {"type": "boolean", "default": False},
                    },
                }
            }
        },
    }
}


def create_app(store: JobStore, worker: GenerationWorker, settings: ServeSettings) -> FastAPI:
    """The API over one store and one worker; the lifespan starts the worker and stops it on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        if not await run_in_threadpool(worker.stop, SHUTDOWN_WAIT_S):
            worker.log.info("the running batch did not reach a stage boundary; it runs again at the next start")

    app = FastAPI(
        title="cosmos-cli serve",
        version=__version__,
        description="Cosmos-1.0 Video2World generation: submit a clip and a prompt, poll, download the mp4.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    auth = [Depends(BearerAuth(settings.api_key))]
    dirs = store.dirs
    check_slots = CheckSlots(settings.max_upload_checks)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """The process is up (no key needed)."""
        return Health(status="ok", version=__version__)

    @app.get("/readyz", response_model=Ready, dependencies=auth, tags=["health"],
             responses={**_ERRORS, 503: {"model": ErrorResponse}})  # fmt: skip
    def readyz() -> Ready:
        """The models are loaded and jobs are being run."""
        if not worker.ready.is_set():
            raise ApiError(503, "not_ready", "the models are still loading")
        return Ready(status="ready", version=__version__, model=settings.model, device=settings.device,
                     batch_size=settings.batch_size,
                     upload_checks=UploadChecks(limit=check_slots.limit, running=check_slots.running,
                                                peak=check_slots.peak))  # fmt: skip

    @app.post("/v1/generations", status_code=202, response_model=GenerationCreated, dependencies=auth,
              openapi_extra=_UPLOAD_SCHEMA, tags=["generations"],
              responses={**_ERRORS, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                         422: {"model": ErrorResponse}})  # fmt: skip
    async def create_generation(request: Request) -> JSONResponse:
        """Queue a generation: the upload is checked (as `extract-frames` does) before it is accepted."""
        job_id = uuid.uuid4().hex
        staging = dirs.incoming / job_id
        staging.mkdir()
        try:
            form = await receive_form(request, staging, settings.max_upload_bytes)
            params = job_params(form, settings.prompt_required)
            async with check_slots.hold():
                await run_in_threadpool(
                    check_visual_input, form.file_path, form.filename, params.num_input_frames,
                    settings.input_height, settings.input_width,
                )  # fmt: skip
            target = dirs.upload_path(job_id, form.file_path.suffix.lower())
            await run_in_threadpool(commit_upload, form.file_path, target)
            try:
                await run_in_threadpool(store.add, job_id, params, target)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        except ClientDisconnect:
            return JSONResponse(error_body("client_disconnected", "the upload was interrupted"), status_code=400)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        worker.wake()
        return JSONResponse(
            GenerationCreated(id=job_id, status="queued").model_dump(),
            status_code=202,
            headers={"Location": f"/v1/generations/{job_id}"},
        )

    @app.get("/v1/generations", response_model=GenerationList, dependencies=auth, tags=["generations"],
             responses=_ERRORS)  # fmt: skip
    def list_generations(
        status: Status | None = Query(None, description="Only jobs with this status."),
        limit: int = Query(100, ge=1, le=1000),
    ) -> GenerationList:
        """The most recent jobs (up to ``limit``), in the order they were submitted."""
        return GenerationList(generations=[_generation(job) for job in store.recent(status, limit)])

    @app.get("/v1/generations/{job_id}", response_model=Generation, dependencies=auth, tags=["generations"],
             responses=_ERRORS)  # fmt: skip
    def get_generation(job_id: str) -> Generation:
        return _generation(_job(store, job_id))

    @app.get("/v1/generations/{job_id}/video", dependencies=auth, tags=["generations"],
             response_class=FileResponse, responses={**_ERRORS, 200: {"content": {"video/mp4": {}}}})  # fmt: skip
    def get_video(job_id: str) -> FileResponse:
        """The generated mp4 (``num_frames`` frames, 33 by default); 404 until the job has succeeded."""
        job = _job(store, job_id)
        path = dirs.video_path(job_id)
        if job.status != "succeeded" or not path.is_file():
            raise ApiError(404, "not_found", f"generation {job_id} has no video ({job.status})")
        return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.delete("/v1/generations/{job_id}", response_model=Generation, dependencies=auth, tags=["generations"],
                responses={**_ERRORS, 409: {"model": ErrorResponse}})  # fmt: skip
    def cancel_generation(job_id: str) -> Generation:
        """Cancel a queued or running job (a running one stops at its next stage boundary)."""
        try:
            job = store.cancel(job_id)
        except JobFinished as done:
            raise ApiError(
                409, "conflict", f"generation {job_id} already {done.job.status}; there is nothing to cancel"
            ) from None
        if job is None:
            raise _not_found(job_id)
        worker.log.info("job %s cancelled by request", job_id)
        return _generation(job)

    return app


def _job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise _not_found(job_id)
    return job


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no generation with id {job_id}")


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"code", "message"}}``: ours, FastAPI's validation, Starlette's 404/405."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, err: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            error_body(codes.get(err.status_code, f"http_{err.status_code}"), str(err.detail)),
            status_code=err.status_code,
            headers=getattr(err, "headers", None),
        )

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("internal", f"internal server error ({type(err).__name__}); see the server log"),
            status_code=500,
        )
