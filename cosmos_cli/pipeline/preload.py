"""Load the stages after the AR model while it decodes, so a cold first video costs ~max(load, compute).

A cold ``generate`` used to load each stage when it was first used: the diffusion decoder's 14 GB and the
video guardrail were read only after the AR model had decoded all its tokens (~33 s on an H100, during which
the disk sat idle). :class:`StageLoader` loads those later stages on a background thread (on its own CUDA
stream) while the AR model decodes, and can warm one up (the diffusion decoder's first compiled call) there
too; the foreground waits for it only when it needs a stage that is not ready.

Why only *during the AR decode*, and not T5 while the text guardrail runs:

- The AR model captures its decode step in a CUDA graph when it starts decoding; CUDA forbids other threads'
  allocations and copies during a capture, so the loader starts only once the AR stage says its graph is
  captured (:attr:`ARModelStage.decode_started`), or when the foreground needs one of its stages.
- Loading a model (Hugging Face ``from_pretrained``, our meta-device builds) changes process-wide state such
  as torch's default dtype for a moment; during the AR decode the foreground only replays a graph, which no
  such state can change, while any other stage's Python code could be affected. For the same reason the
  foreground waits for *all* of the loader's stages before it runs the first of them.

Only stages that stay resident on the GPU (no offloading plan) are preloaded: with a memory budget the
planner has counted on stages coming in one at a time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from cosmos_cli.offload.placements import Placements
from cosmos_cli.pipeline.stage import Stage


@dataclass
class LoadRecord:
    """When the loader started and finished a stage (``time.perf_counter()``), and what went wrong."""

    name: str
    start: float = 0.0
    loaded: float = 0.0
    end: float = 0.0
    """After the warm-up, if any."""
    error: BaseException | None = None
    warm_error: str | None = None


@dataclass
class StageLoader:
    """Loads ``stages`` in order on one background thread once ``gate`` is set (or :meth:`wait` needs them).

    ``warm``: per stage name, a callable run on the loader thread right after that stage loads (e.g. the
    first compiled call); its failure is recorded and ignored, since the foreground's first call compiles
    again. Errors of a load are re-raised in the foreground by :meth:`wait`.
    """

    stages: Sequence[Stage]
    device: torch.device
    gate: threading.Event
    warm: dict[str, Callable[[], None]] = field(default_factory=dict)
    records: dict[str, LoadRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._names = {s.name for s in self.stages}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cosmos-stage-loader", daemon=True)

    def start(self) -> StageLoader:
        self._thread.start()
        return self

    def covers(self, stage: Stage) -> bool:
        return stage.name in self._names

    def _run(self) -> None:
        try:
            self.gate.wait()
            stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                for stage in self.stages:
                    record = self.records.setdefault(stage.name, LoadRecord(stage.name))
                    record.start = time.perf_counter()
                    try:
                        stage.load(self.device)
                        _sync(stream)
                    except BaseException as err:  # noqa: BLE001 - handed to the foreground by wait()
                        record.error = err
                        record.loaded = record.end = time.perf_counter()
                        break
                    record.loaded = time.perf_counter()
                    warm = self.warm.get(stage.name)
                    if warm is not None:
                        try:
                            warm()
                            _sync(stream)
                        except Exception as err:  # noqa: BLE001 - only an optimisation
                            record.warm_error = f"{type(err).__name__}: {err}"
                    record.end = time.perf_counter()
        finally:
            self._done.set()

    def wait(self, stage: Stage) -> None:
        """Block until every stage of the loader is ready (see the module docstring for why all)."""
        if not self.covers(stage):
            return
        self.gate.set()  # needed now: load even if the AR stage never signalled
        self._done.wait()
        self._thread.join()
        for record in self.records.values():
            if record.error is not None:
                err, record.error = record.error, None
                raise err

    def summary(self) -> dict[str, dict]:
        """Per stage: seconds loading and warming, and when (relative to the first start)."""
        starts = [r.start for r in self.records.values() if r.start]
        t0 = min(starts) if starts else 0.0
        return {
            name: {
                "load_s": round(r.loaded - r.start, 3),
                "warm_s": round(r.end - r.loaded, 3),
                "started_at_s": round(r.start - t0, 3),
                "warm_error": r.warm_error,
            }
            for name, r in self.records.items()
        }


def _sync(stream: torch.cuda.Stream | None) -> None:
    if stream is not None:
        stream.synchronize()


class PreloadingPlacements(Placements):
    """:class:`Placements` that first waits for a background :class:`StageLoader` covering the stage."""

    loader: StageLoader | None = None

    @contextlib.contextmanager
    def use(self, stage: Stage) -> Iterator[Stage]:
        if self.loader is not None:
            self.loader.wait(stage)
        with super().use(stage) as used:
            yield used


def later_stages(stages: Sequence[Stage], after: Stage, placements: Placements) -> list[Stage]:
    """The not-yet-loaded stages that run after ``after``; none unless every stage stays on the GPU."""
    stages = list(stages)
    if after not in stages or any(placements.placement(s) != "gpu" for s in stages):
        return []
    return [s for s in stages[stages.index(after) + 1 :] if not s.loaded]


def start_preload(pipeline) -> StageLoader | None:
    """Start loading ``pipeline``'s stages after the AR model in the background, gated on its decode.

    The diffusion decoder is also warmed up there (its compiled blocks traced at the video's shape), so
    the first video pays neither its load nor its compile after the AR model. Returns None when nothing
    is to be loaded (warm process, offload plan, no AR stage).
    """
    pipeline.placements.loader = None
    stages = later_stages(pipeline.stages(), pipeline.ar, pipeline.placements)
    if not stages:
        return None
    warm = {}
    dd = pipeline.diffusion_decoder
    if dd is not None and dd in stages and dd.compile:
        args = pipeline.args
        warm[dd.name] = lambda: dd.warm_up(tuple(args.latent_shape), args.context_len)
    pipeline.ar.decode_started.clear()
    loader = StageLoader(stages, pipeline.device, pipeline.ar.decode_started, warm)
    pipeline.placements.loader = loader
    return loader.start()
