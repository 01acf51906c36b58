"""The pipeline ``generate`` and ``serve`` run: the real stages, or with ``--load-format dummy`` the stand-ins."""

from __future__ import annotations

from pathlib import Path

from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline


def open_pipeline(config: PipelineConfig, **kwargs) -> VideoPipeline:
    """Read from the checkpoints, or with ``--load-format dummy`` every stage at the released shapes with
    random weights (:class:`~cosmos_cli.stages.standins.StandInStages`; no files needed but the AR folder's
    name or its ``cosmos_arch.json``), for measuring speed and memory where the weights are not. The few
    small files the stand-ins read go to a temporary folder removed at exit. Inductor's compile cache goes
    next to the checkpoints unless ``TORCHINDUCTOR_CACHE_DIR`` is set (``compile_cache``). ``kwargs``:
    :class:`VideoPipeline`'s (``model_builder`` / ``link`` for tensor parallelism)."""
    from cosmos_cli.compile_cache import use_cache_next_to

    if config.compile:
        use_cache_next_to(Path(config.checkpoint_dir))
    if config.load_format != "dummy":
        return VideoPipeline(config, **kwargs)
    import atexit
    import shutil
    import tempfile

    from cosmos_cli.stages.standins import StandInStages

    workdir = Path(tempfile.mkdtemp(prefix="cosmos-standins-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return VideoPipeline(config, stages=StandInStages(workdir), **kwargs)
