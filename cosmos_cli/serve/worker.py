"""The one thread that owns the pipeline: loads the models once, then runs queued jobs in order.

Only this thread touches the GPU, so jobs never compete for memory; with ``--batch-size N`` it takes up to N
queued jobs at once and :meth:`VideoPipeline.run` decodes them together, exactly as ``generate`` does for a
JSONL batch. Whether to use the diffusion decoder is a pipeline setting, so a batch holds only jobs that
agree on it (:meth:`JobStore.claim`), and a batch that asked for the DV decoder runs with the pipeline's
``diffusion_decoder`` set aside for its duration: the same objects, never a second pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cosmos_cli.errors import BadInput, describe
from cosmos_cli.memory import free_device_memory
from cosmos_cli.pipeline.pipeline import SampleResult, VideoPipeline
from cosmos_cli.pipeline.samples import Sample
from cosmos_cli.serve.jobs import Job, JobStore

PROGRESS_INTERVAL_S = 0.5
"""At most one progress write per job this often (the AR stage reports every few tokens)."""


class GenerationWorker:
    def __init__(
        self,
        pipeline: VideoPipeline,
        store: JobStore,
        batch_size: int,
        log: logging.Logger,
        on_fatal: Callable[[BaseException], None],
    ):
        self.pipeline, self.store, self.batch_size, self.log = pipeline, store, max(1, batch_size), log
        self.on_fatal = on_fatal
        self.ready = threading.Event()
        """Set once every gpu-placed stage is loaded (``/readyz``)."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="cosmos-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the worker to stop at the next stage boundary; True if it did within ``timeout`` seconds.

        The unfinished jobs of a batch cut short go back to the queue and run again at the next start.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the thread ----------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._load()
        except BaseException as err:  # noqa: BLE001 (reported, then the server shuts down)
            self.log.error("could not load the models: %s", describe(err))
            self.on_fatal(err)
            return
        self.ready.set()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                batch = self.store.claim(self.batch_size)
                if batch:
                    self._run(batch)
                    continue
            except Exception:  # the job database (disk full, ...): keep serving, try again shortly
                self.log.exception("the worker could not take or record jobs; retrying in 5 s")
            self._wake.wait(timeout=5.0)

    def _load(self) -> None:
        pipeline = self.pipeline
        decoder = "diffusion" if pipeline.diffusion_decoder is not None else "DV8x16x16"
        self.log.info(
            "loading %s on %s (decoder: %s, batch size %d)", pipeline.args.name, pipeline.device, decoder,
            self.batch_size,
        )  # fmt: skip
        start = time.perf_counter()
        pipeline.load_all(on_stage=lambda name: self.log.info("loading %s ...", name))
        self.log.info("models loaded in %.1f s; ready for jobs", time.perf_counter() - start)

    def _run(self, batch: list[Job]) -> None:
        ids = [job.id for job in batch]
        dirs = self.store.dirs
        for job_id in ids:  # what an interrupted earlier attempt may have left
            shutil.rmtree(dirs.result_dir(job_id), ignore_errors=True)
        samples = [_sample(job, dirs.root) for job in batch]
        self.log.info("running %d job(s): %s", len(batch), ", ".join(ids))
        start = time.perf_counter()

        def should_stop() -> bool:
            return self._stop.is_set() or len(self.store.cancelled(ids)) == len(ids)

        try:
            with self._decoder(batch[0].params.disable_diffusion_decoder):
                results = self.pipeline.run(
                    samples, dirs.results, overwrite=True, on_event=_ProgressWriter(self.store), should_stop=should_stop
                )
        except Exception as err:  # out of GPU memory, or a bug: this batch fails, the server goes on
            self.log.exception("batch %s failed", ", ".join(ids))
            free_device_memory()
            for job_id in ids:
                failed = SampleResult(job_id, status="failed", error=_batch_error(err, len(batch)))
                self._finish(job_id, failed, time.perf_counter() - start)
            return
        unfinished = []
        for job_id, result in zip(ids, results, strict=True):
            if result.status == "pending" and self._stop.is_set():
                unfinished.append(job_id)  # shutting down: queued again, runs at the next start
                continue
            self._finish(job_id, result, time.perf_counter() - start)
        if unfinished:
            for job_id in unfinished:
                shutil.rmtree(dirs.result_dir(job_id), ignore_errors=True)
            self.log.info("stopping: job(s) %s queued again", ", ".join(self.store.requeue(unfinished)))

    def _finish(self, job_id: str, result: SampleResult, seconds: float) -> None:
        status = "succeeded" if result.status == "succeeded" else "failed"
        error = None if status == "succeeded" else (_error_code(result), result.error or "not generated")
        if self.store.finish(job_id, status, decoder=result.decoder, error=error, timings=result.timings):
            self.log.info("job %s %s in %.1f s%s", job_id, status, seconds, f": {error[1]}" if error else "")
        else:  # cancelled meanwhile: its output must not appear
            shutil.rmtree(self.store.dirs.result_dir(job_id), ignore_errors=True)
            self.log.info("job %s cancelled while running; nothing of it is kept", job_id)

    @contextlib.contextmanager
    def _decoder(self, disable_diffusion_decoder: bool) -> Iterator[None]:
        """Decode this batch with the DV tokenizer if its jobs asked to, restoring the pipeline afterwards."""
        saved = self.pipeline.diffusion_decoder
        if disable_diffusion_decoder:
            self.pipeline.diffusion_decoder = None
        try:
            yield
        finally:
            self.pipeline.diffusion_decoder = saved


class _ProgressWriter:
    """``on_event`` for :meth:`VideoPipeline.run`: stage changes at once, token counts at most every 0.5 s."""

    def __init__(self, store: JobStore):
        self.store = store
        self._last: dict[str, tuple[str, float]] = {}

    def __call__(self, job_id: str, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        last_stage, last_time = self._last.get(job_id, ("", 0.0))
        if stage != last_stage or done >= total or now - last_time >= PROGRESS_INTERVAL_S:
            self.store.progress(job_id, stage, done, total)
            self._last[job_id] = (stage, now)


def _sample(job: Job, root: Path) -> Sample:
    params = job.params
    return Sample(
        name=job.id,
        prompt=params.prompt,
        visual_input=root / job.input_path,
        seed=params.seed,
        top_p=params.top_p,
        temperature=params.temperature,
        num_input_frames=params.num_input_frames,
        num_frames=params.num_frames,
    )


def _error_code(result: SampleResult) -> str:
    if result.status == "blocked":
        return "guardrail_blocked"
    if isinstance(result.exception, BadInput):
        return "invalid_input"
    return "generation_failed"


def _batch_error(err: Exception, batch_size: int) -> str:
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return (
            f"out of GPU memory while generating a batch of {batch_size} (restart the server with a smaller "
            "--batch-size, or place stages in host memory with --placement STAGE=cpu)"
        )
    return describe(err)


