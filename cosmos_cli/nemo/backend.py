"""``generate --backend nemo``: run NVIDIA's NeMo video2world script and file its video like ours.

For people inside NVIDIA's NeMo container who want NVIDIA's own implementation (to compare with ours, or
because their process requires it). Everything is checked before anything is launched
(:mod:`cosmos_cli.nemo.script`): what the script cannot honour, the ``NVTE_*`` attention variables it
asserts on, ``HF_HOME``, the Cosmos checkout and NeMo itself. Then, per sample (a JSONL batch is one
script run per line, as the script takes one input), the ``torchrun`` command runs in the Cosmos checkout;
its log lines stream into our display and into ``<name>/nemo.log``; the video it writes (to a staging
name next to ours) is checked and renamed to ``<output_dir>/<name>/<name>.mp4``, next to a
``generation.json`` with the backend, the command, its exit code, timings, prompt and input.

A non-zero exit of the script is a non-zero exit of ours, with its last log lines; exit 0 without a
readable video is an error too. The script itself was never run while writing this (no NeMo, no GPU
here): it is tested against a stand-in with the same command line (``tests/nemo_script_standin``).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cosmos_cli import __version__, settings
from cosmos_cli.errors import BadInput, CosmosError, GuardrailBlocked

LOG_FILE = "nemo.log"
TAIL_LINES = 12
PHASES = (
    (re.compile(r"Running Inference to generate (\d+) tokens"), "ar_model", "AR model: {} tokens"),
    (re.compile(r"Running diffusion model"), "decode", "decoding the tokens"),
    (re.compile(r"Running guardrails"), "video_guardrail", "video guardrail"),
    (re.compile(r"Saved to "), "save", "saving"),
)
"""NVIDIA's log lines that start a stage (``shared/spec/nemo.md`` section 4) -> timing key, display text.
Everything before the first is ``startup`` (torchrun, imports, tokenizing the input, loading the model);
``ar_model`` includes T5 (it runs after that line); ``decode`` is the DV decoder plus the diffusion decoder
unless disabled (the script logs that line either way)."""
BLOCKED = "Guardrail blocked world generation"
STOP_GRACE_S = 30


@dataclass
class NemoResult:
    name: str
    status: str = "pending"  # succeeded | skipped | blocked | failed
    video_path: str | None = None
    error: str | None = None
    exit_code: int = 0
    log_tail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "video_path": self.video_path, "error": self.error,
                "exit_code": self.exit_code}  # fmt: skip


def run_nemo(request) -> None:
    """Check everything, run the script for every sample, report like our engine (paths on stdout;
    exit 2/3/4/1 or the script's code). ``request`` is a validated ``GenerateRequest``."""
    from cosmos_cli.console import info, stdout, warn
    from cosmos_cli.io.atomic import check_writable_folder
    from cosmos_cli.nemo import script

    config = request.pipeline
    output_dir = Path(request.output_dir).resolve()  # the script runs in the Cosmos checkout, not here
    script.check_request(request)
    script.check_environment()
    repo = script.find_script(request.cosmos_repo)
    ar_model = script.ar_model_arg(config.checkpoint_dir, config.ar_model_dir)
    samples = request.to_samples()
    runs = [script.build_run(request, sample, repo, ar_model) for sample in samples]  # reads every input
    pairs = list(zip(samples, runs, strict=True))
    todo = [_plan(sample, run, output_dir, request.overwrite) for sample, run in pairs]
    check_writable_folder(output_dir)
    script.check_container(repo, runs[0].env)
    if config.guardrail == "off":
        from cosmos_cli.guardrail import GUARDRAIL_OFF_WARNING

        warn(GUARDRAIL_OFF_WARNING)
    else:
        warn("NVIDIA's NeMo script runs the video guardrail only: it has no text guardrail for the prompt")
    info(f"[bold]NVIDIA's NeMo script[/bold] ({repo / script.SCRIPT}), {len(samples)} sample(s), {ar_model}")
    results = _run_all(samples, runs, todo, output_dir, batch=request.batch_input is not None)
    if request.batch_input is not None:
        _write_summary(output_dir, results)
    for result in results:
        if result.status in ("succeeded", "skipped"):
            note = " (already done; --overwrite to redo)" if result.status == "skipped" else ""
            stdout.print(f"{result.video_path}{note}", highlight=False, soft_wrap=True)
        elif len(results) > 1:
            warn(f"{result.name}: {result.status}: {result.error}")
    failed = [r for r in results if r.status in ("failed", "blocked")]
    if failed:
        first = failed[0]
        if len(results) > 1:
            raise CosmosError(f"{len(failed)} of {len(results)} sample(s) did not succeed; first: {first.error}",
                              exit_code=first.exit_code)  # fmt: skip
        if first.status == "blocked":
            raise GuardrailBlocked(first.error, exit_code=first.exit_code)
        raise CosmosError(first.error, exit_code=first.exit_code)


def _run_all(samples, runs, todo, output_dir: Path, batch: bool) -> list[NemoResult]:
    """Every sample in turn. Ctrl-C / SIGTERM stop the script (``stream``), leave nothing half-written,
    write the batch's summary (the sample running then ``interrupted``, later ones ``pending``), say so in
    one line and exit ``128 + signal``, as our engine does (:mod:`cosmos_cli.pipeline.interrupt`)."""
    from cosmos_cli.pipeline.interrupt import Interrupted, interrupts_raise, report

    results: list[NemoResult] = []
    try:
        with interrupts_raise():
            for sample, run, skip in zip(samples, runs, todo, strict=True):
                results.append(skip if skip is not None else run_sample(sample, run, output_dir))
    except Interrupted as stop:
        rest = [NemoResult(s.name, status="pending") for s in samples[len(results) :]]
        if rest:
            rest[0].status, rest[0].error = "interrupted", f"stopped by {stop.signal_name}"
        report(stop, results + rest, output_dir, _write_summary if batch else None)
        raise SystemExit(stop.exit_code) from None
    return results


def _write_summary(output_dir: Path, results: list[NemoResult], **extra) -> None:
    _write_json(output_dir / "summary.json", {"backend": "nemo", "samples": [r.as_dict() for r in results], **extra})


def _plan(sample, run, output_dir: Path, overwrite: bool) -> NemoResult | None:
    """None: run it. A result: already done for the same request (skipped). Another request's output
    without ``--overwrite`` is refused before anything runs."""
    video = sample.video_path(output_dir)
    if overwrite or not (video.exists() or video.is_symlink()):
        return None
    record = sample.finished_record(output_dir)
    if record and record.get("backend") == "nemo" and record.get("nemo_request") == run.request:
        return NemoResult(sample.name, status="skipped", video_path=str(video))
    raise BadInput(f"{video} already exists for another request", "pass --overwrite to replace it, or --output-dir")


def run_sample(sample, run, output_dir: Path) -> NemoResult:
    """One script run: stream its log, file its video with ``generation.json``; never raises for the
    script's own failure (the result says it), only for Ctrl-C."""
    from cosmos_cli.io.atomic import atomic_path

    folder, video = sample.folder(output_dir), sample.video_path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sample.result_path(output_dir).unlink(missing_ok=True)  # an old record never describes a new video
    result = NemoResult(sample.name)
    record = _base_record(sample, run, video)
    started = time.monotonic()
    try:
        with atomic_path(video, overwrite=True) as staged:
            record["video_save_name_run"] = str(staged)
            rc, tail, timings = stream(run.argv_for(staged), run, folder / LOG_FILE, sample.name)
            record.update(exit_code=rc, timings_s={**timings, "total": round(time.monotonic() - started, 3)})
            result.log_tail = list(tail)
            if rc != 0:
                raise _script_failed(rc, folder / LOG_FILE)
            record["output"] = _probe(staged, folder / LOG_FILE)
        result.status, result.video_path = "succeeded", str(video)
    except CosmosError as err:
        result.status = "blocked" if isinstance(err, GuardrailBlocked) else "failed"
        result.error, result.exit_code = err.one_line(), err.exit_code
        _print_tail(result.log_tail)
    record.update(status=result.status, error=result.error, video=result.video_path, log_tail=result.log_tail,
                  finished_at=datetime.now(timezone.utc).isoformat())  # fmt: skip
    record.setdefault("timings_s", {"total": round(time.monotonic() - started, 3)})
    try:
        _write_json(sample.result_path(output_dir), record)
    except BaseException:
        if result.status == "succeeded":
            video.unlink(missing_ok=True)  # a video without its record is not a result
        raise
    return result


def _base_record(sample, run, video: Path) -> dict:
    from cosmos_cli.nemo.script import SCRIPT

    return {
        "status": "pending",
        "backend": "nemo",
        "script": str(SCRIPT),
        "command": run.command_line(video),
        "argv": run.argv_for(video),
        "cwd": str(run.cwd),
        "env": run.env,
        "exit_code": None,
        "prompt": sample.prompt,
        "input": str(Path(sample.visual_input).resolve()),
        "input_sha256": run.request["input_sha256"],
        "nemo_request": run.request,
        "log": LOG_FILE,
        "cosmos_cli": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(),
    }


# ---- running and streaming ------------------------------------------------------------------------
def stream(argv: list[str], run, log_path: Path, label: str) -> tuple[int, deque[str], dict[str, float]]:
    """Run ``argv`` in ``run.cwd``; every output line goes to the display (as it comes: the child is
    unbuffered) and to ``log_path``. Returns the exit code, the last lines and the stage timings."""
    env = {**settings.child_environ(), **run.env}
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    marks: list[tuple[str, float]] = [("startup", time.monotonic())]
    with open(log_path, "w", encoding="utf-8") as log, _display(label) as show:
        proc = subprocess.Popen(argv, cwd=run.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)  # fmt: skip
        try:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                tail.append(line)
                phase = _phase(line)
                if phase is not None:
                    marks.append((phase[0], time.monotonic()))
                show(line, phase[1] if phase else None)
            rc = proc.wait()
        except BaseException:  # Ctrl-C, or anything of ours: the script must not run on unattended
            _stop(proc)
            raise
    marks.append(("end", time.monotonic()))
    timings = {name: round(marks[i + 1][1] - t, 3) for i, (name, t) in enumerate(marks[:-1])}
    return rc, tail, timings


def _phase(line: str) -> tuple[str, str] | None:
    for pattern, key, text in PHASES:
        match = pattern.search(line)
        if match:
            return key, text.format(*match.groups())
    return None


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to torchrun (it stops its worker), then SIGKILL if it has not ended within the grace time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _display(label: str) -> Iterator:
    """A spinner naming the script's current stage, with each log line printed above it (dim)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from cosmos_cli.console import console, is_rank_zero

    disabled = not is_rank_zero() or settings.progress_disabled()
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=disabled, transient=True) as bar:
        task = bar.add_task(f"{label}: NeMo startup", total=None)

        def show(line: str, phase: str | None) -> None:
            console.print(Text(line, style="dim"), soft_wrap=True)
            if phase is not None:
                bar.update(task, description=f"{label}: {phase}")

        yield show


# ---- outcomes -------------------------------------------------------------------------------------
_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b:")


def _script_failed(rc: int, log: Path) -> CosmosError:
    """The script's failure as one line: the last exception line of its whole log (torchrun's own
    ChildFailedError lines are skipped; the worker's traceback may be far above its summary), the exit
    code, and where the whole log is. The guardrail's refusal is :class:`GuardrailBlocked` (exit 4)."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        lines = []
    lines = [line for line in lines if line]
    if any(BLOCKED in line for line in lines):
        return GuardrailBlocked("NVIDIA's NeMo script: the guardrail blocked the generated video", exit_code=4)
    errors = [line for line in lines if _ERROR_LINE.search(line) and "ChildFailedError" not in line]
    cause = (errors or lines or ["no output"])[-1][:300]
    code = rc if 0 < rc < 256 else (128 - rc if rc < 0 else 1)
    return CosmosError(f"NVIDIA's NeMo script failed with exit code {rc}: {cause}", f"whole log: {log}",
                       exit_code=code)  # fmt: skip


def _probe(video: Path, log: Path) -> dict:
    """Frames, size and rate of the script's video; exit 0 without a readable 33-frame video is an error."""
    import imageio_ffmpeg

    from cosmos_cli.nemo.script import FRAMES

    if not video.is_file() or video.stat().st_size == 0:
        raise CosmosError("NVIDIA's NeMo script exited 0 but wrote no video (to its --video_save_name)",
                          f"whole log: {log}", exit_code=1)  # fmt: skip
    try:
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    except (RuntimeError, OSError, StopIteration) as err:
        raise CosmosError(f"NVIDIA's NeMo script wrote an unreadable video ({err})", f"whole log: {log}",
                          exit_code=1) from err
    width, height = meta["size"]
    if frames != FRAMES:
        raise CosmosError(f"NVIDIA's NeMo script wrote {frames} frames, not {FRAMES}; nothing was kept",
                          f"whole log: {log}", exit_code=1)  # fmt: skip
    return {"frames": frames, "width": width, "height": height, "fps": meta.get("fps")}


def _print_tail(tail: list[str]) -> None:
    from cosmos_cli.console import console

    if tail:
        console.print(f"last {len(tail)} lines of NVIDIA's NeMo script:", style="red", highlight=False)
        for line in tail:
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def _write_json(path: Path, data: dict) -> None:
    from cosmos_cli.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2))
