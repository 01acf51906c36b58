"""Background loading of the stages after the AR model (real threads, tiny checkpoints read from disk)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.conftest import TINY_AR_DIR, shared_path


def _pipeline(tiny_checkpoints, *, preload: bool, placements=None):
    from cosmos_cli.pipeline.pipeline import PipelineConfig, VideoPipeline

    class Recording(VideoPipeline):
        """Keeps the decoded frames and when the AR stage's ``generate`` returned."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.frames, self.ar_done = {}, None
            generate = self.ar.generate

            def timed_generate(*args, **kwargs):
                out = generate(*args, **kwargs)
                self.ar_done = time.perf_counter()
                return out

            self.ar.generate = timed_generate

        def _stage_decode(self, live, generated, contexts, results, on_event):
            out = super()._stage_decode(live, generated, contexts, results, on_event)
            self.frames.update(out)
            return out

    config = PipelineConfig(checkpoint_dir=tiny_checkpoints, ar_model_dir=TINY_AR_DIR, device="cpu",
                            preload=preload, placements=placements or {})  # fmt: skip
    return Recording(config)


def _clip():
    clip = shared_path("data", "clips", "input.mp4")
    if not clip.exists():
        pytest.skip(f"{clip} missing (shared data)")
    return clip


def test_decoder_loads_while_the_ar_model_decodes_and_outputs_are_unchanged(tiny_checkpoints, tmp_path):
    from cosmos_cli.pipeline.samples import Sample

    clip = _clip()
    sample = Sample("s", "a robot arm moves a cube", clip, seed=3)
    eager = _pipeline(tiny_checkpoints, preload=False)
    (plain,) = eager.run([sample], tmp_path / "plain")
    assert plain.status == "succeeded", plain.error
    assert eager.loader is None

    pipe = _pipeline(tiny_checkpoints, preload=True)
    seen_threads = {}
    load = pipe.diffusion_decoder.load

    def spy(device):
        seen_threads["dd"] = threading.current_thread().name
        load(device)

    pipe.diffusion_decoder.load = spy
    (result,) = pipe.run([Sample("s", "a robot arm moves a cube", clip, seed=3)], tmp_path / "pre")
    assert result.status == "succeeded", result.error
    records = pipe.loader.records
    assert [*records] == ["diffusion_decoder", "video_guardrail"]  # the stages after the AR model, in order
    assert seen_threads["dd"] == "cosmos-stage-loader"
    # The decoder's load started before the AR stage finished decoding, and after it had started.
    assert records["diffusion_decoder"].start < pipe.ar_done
    assert pipe.ar.decode_started.is_set()
    assert records["diffusion_decoder"].error is None and records["video_guardrail"].error is None
    # Same tokens, same frames: loading order changes nothing.
    np.testing.assert_array_equal(pipe.frames["s"], eager.frames["s"])
    assert result.timings.keys() == plain.timings.keys()
    # A second video in the same process loads nothing more.
    (again,) = pipe.run([Sample("t", "a robot arm moves a cube", clip, seed=3)], tmp_path / "pre")
    assert again.status == "succeeded" and pipe.loader is None and pipe.placements.loader is None


def test_no_preload_under_an_offload_plan(tiny_checkpoints):
    from cosmos_cli.pipeline.preload import later_stages

    pipe = _pipeline(tiny_checkpoints, preload=True, placements={"diffusion_decoder": "cpu"})
    pipe.placements.offload = True
    assert later_stages(pipe.stages(), pipe.ar, pipe.placements) == []
    pipe.placements.policy.clear()
    assert [s.name for s in later_stages(pipe.stages(), pipe.ar, pipe.placements)] == [
        "diffusion_decoder",
        "video_guardrail",
    ]


def test_a_failed_background_load_surfaces_in_the_foreground(tiny_checkpoints):
    from cosmos_cli.errors import CheckpointMismatch
    from cosmos_cli.pipeline.preload import StageLoader

    pipe = _pipeline(tiny_checkpoints, preload=True)
    dd = pipe.diffusion_decoder

    def broken(device):
        raise CheckpointMismatch("model.pt is truncated", "download it again")

    dd.load = broken
    gate = threading.Event()
    loader = StageLoader([dd, pipe.video_guardrail], pipe.device, gate).start()
    time.sleep(0.05)
    assert not loader.records  # gated: nothing starts before the AR stage says so
    with pytest.raises(CheckpointMismatch, match="truncated"):
        loader.wait(dd)  # opens the gate itself: the foreground needs the stage now
    assert "video_guardrail" not in loader.records  # stopped at the first failure
