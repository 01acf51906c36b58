"""`generate --num-frames N` on the tiny checkpoints: real files, real ffmpeg, a real SIGKILL mid-video.

What is shown (``docs/long-videos.md``): the first 33 frames of an 81-frame video are the 33-frame run's
(same seed); each further chunk is the DV re-encoding of the last 9 decoded frames continued by 24 new
frames, none repeated; same seed, same long video, alone or in a batch with samples of other lengths; a
run killed after its second chunk resumes at its third and ends with the uninterrupted run's video.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cosmos_cli.cli import main
from cosmos_cli.errors import BadInput
from cosmos_cli.io.video import read_mp4
from cosmos_cli.pipeline.chunk_state import STATE_DIR, STATE_FILE
from cosmos_cli.pipeline.long_video import (
    MAX_NUM_FRAMES,
    check_num_frames,
    chunk_seed,
    frames_sha256,
    num_chunks,
)
from tests.conftest import REPO, TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."


def generate(ckpt, *args: str) -> int:
    return main(["generate", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR, *args])


def record(folder) -> dict:
    return json.loads((folder / "generation.json").read_text())


def dv_argv(out, name: str, num_frames: int, seed: int = 5) -> list[str]:
    clip = shared_path("data", "clips", "input.mp4")
    return ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(out), "--video-save-name", name,
            "--num-frames", str(num_frames), "--seed", str(seed), "--disable-diffusion-decoder"]  # fmt: skip


# ---- the request -------------------------------------------------------------------------------------
def test_num_frames_is_33_plus_24k_up_to_the_cap():
    assert [check_num_frames(n) for n in (33, 57, 81, MAX_NUM_FRAMES)] == [33, 57, 81, 273]
    assert check_num_frames("81") == 81 and check_num_frames(81.0) == 81  # form field, JSON number
    assert [num_chunks(n) for n in (33, 57, 273)] == [1, 2, 11]
    for bad, message in [(34, "use 33 or 57"), (32, "use 33"), (80, "use 57 or 81"), (297, "above the cap of 273"),
                         (81.5, "must be an integer"), ("x", "must be an integer"), (0, "use 33")]:  # fmt: skip
        with pytest.raises(BadInput, match=message):
            check_num_frames(bad)


def test_chunk_seeds_come_from_the_seed_alone():
    assert chunk_seed(7, 0) == 7  # the first chunk is the 33-frame run
    seeds = [chunk_seed(7, k) for k in range(11)]
    assert seeds == [chunk_seed(7, k) for k in range(11)]
    assert len(set(seeds)) == 11 and all(0 <= s < 2**63 for s in seeds)
    assert chunk_seed(8, 1) != chunk_seed(7, 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [("34", "--num-frames must be 33 + 24k (33, 57, 81, ..., 273), got 34 (each chunk after the first adds 24"
            " frames; use 33 or 57)"),
     ("297", "--num-frames 297 is above the cap of 273 frames (11 chunks)")],
)  # fmt: skip
def test_bad_num_frames_is_one_line_before_any_model_loads(tmp_path, capsys, value, message):
    clip = shared_path("data", "clips", "input.mp4")
    # an empty checkpoint folder: a model load would fail with "model.pt is missing" instead
    argv = ["--input", str(clip), "--prompt", "x", "--num-frames", value, "--output-dir", str(tmp_path / "o")]
    assert main(["generate", "--checkpoint-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "model.pt" not in err
    assert not (tmp_path / "o").exists()


def test_bad_num_frames_in_a_jsonl_line_names_the_line(tmp_path, capsys):
    clip = shared_path("data", "clips", "input.mp4")
    line = {"prompt": PROMPT, "visual_input": str(clip)}
    lines = [line, {**line, "num_frames": 40}]
    (tmp_path / "batch.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    assert main(["generate", "--checkpoint-dir", str(tmp_path), "--batch-input", str(tmp_path / "batch.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "batch.jsonl:2: num_frames must be 33 + 24k" in err and "Traceback" not in err


# ---- the video -------------------------------------------------------------------------------------
def test_81_frames_start_with_the_33_frame_run(tiny_checkpoints, tmp_path, capsys):
    """Default pipeline (diffusion decoder, full guardrail): the first chunk is the 33-frame run exactly."""
    clip = shared_path("data", "clips", "input.mp4")
    runs = {}
    for name, n in (("short", 33), ("long", 81)):
        argv = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(tmp_path), "--video-save-name", name,
                "--num-frames", str(n), "--seed", "3"]  # fmt: skip
        assert generate(tiny_checkpoints, *argv) == 0
        runs[name] = (record(tmp_path / name), read_mp4(tmp_path / name / f"{name}.mp4"))
    err = capsys.readouterr().err
    assert "chunk 1/3" in err and "chunk 2/3" in err and "chunk 3/3" in err
    (short, short_video), (long, long_video) = runs["short"], runs["long"]
    assert short_video.shape == (33, 64, 96, 3) and long_video.shape == (81, 64, 96, 3)
    assert long["decoder"] == "diffusion_decoder" and long["faces_pixelated"] == 0
    assert long["sample"]["num_frames"] == 81
    chunks = long["chunks"]
    assert [c["frames"] for c in chunks] == [[0, 33], [33, 57], [57, 81]]  # contiguous, nothing repeated
    assert [c["context_frames"] for c in chunks] == ["input", [24, 33], [48, 57]]
    assert [c["seed"] for c in chunks] == [chunk_seed(3, k) for k in range(3)]
    assert [c["dd_seed"] for c in chunks] == [c["seed"] for c in chunks]
    for c in chunks:
        assert {"tokenize", "ar_model", "diffusion_decoder"} <= set(c["timings_s"])
    total = sum(c["timings_s"]["ar_model"] for c in chunks)
    assert long["timings_s"]["ar_model"] == pytest.approx(total, abs=0.01)
    # The frames given to the encoder: the long video's first chunk is bit-for-bit the short run.
    assert short["chunks"][0]["frames_sha256"] == chunks[0]["frames_sha256"]
    # After lossy H.264 the two files still decode to the same first 33 frames here (a longer clip may
    # change the encoder's decisions on other content: the hashes above are the exact check).
    assert np.abs(long_video[:33].astype(int) - short_video.astype(int)).mean() < 1.0
    assert not (tmp_path / "long" / STATE_DIR).exists()  # the resume state goes once the video is written


@pytest.fixture(scope="module")
def dv81(tiny_checkpoints, tmp_path_factory):
    """The reference 81-frame run (DV decoder, seed 5), uninterrupted."""
    out = tmp_path_factory.mktemp("dv81")
    assert generate(tiny_checkpoints, *dv_argv(out, "ref", 81)) == 0
    return record(out / "ref"), read_mp4(out / "ref" / "ref.mp4")


def test_same_seed_same_long_video_alone_or_in_a_batch_of_other_lengths(tiny_checkpoints, tmp_path, dv81):
    clips = shared_path("data", "clips")
    ref, ref_video = dv81
    lines = [{"prompt": PROMPT, "visual_input": str(clips / "batch_inputs_0.mp4"), "num_frames": 57, "seed": 1},
             {"prompt": PROMPT, "visual_input": str(clips / "input.mp4"), "num_frames": 81, "seed": 5},
             {"prompt": PROMPT, "visual_input": str(clips / "batch_inputs_1.mp4"), "seed": 2}]  # fmt: skip
    (tmp_path / "batch.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    argv = ["--batch-input", str(tmp_path / "batch.jsonl"), "--output-dir", str(out), "--batch-size", "3",
            "--disable-diffusion-decoder"]  # fmt: skip
    assert generate(tiny_checkpoints, *argv) == 0
    names = ("000_batch_inputs_0", "001_input", "002_batch_inputs_1")
    lengths = [read_mp4(out / n / f"{n}.mp4").shape[0] for n in names]
    assert lengths == [57, 81, 33]
    batched = record(out / "001_input")
    assert [c["frames_sha256"] for c in batched["chunks"]] == [c["frames_sha256"] for c in ref["chunks"]]
    assert np.array_equal(read_mp4(out / "001_input" / "001_input.mp4"), ref_video)
    # a different seed gives another continuation, chunk by chunk
    assert generate(tiny_checkpoints, *dv_argv(tmp_path, "other", 81, seed=6)) == 0
    other = record(tmp_path / "other")
    assert all(a["frames_sha256"] != b["frames_sha256"] for a, b in zip(other["chunks"], ref["chunks"], strict=True))


def _wait_for_chunks(proc: subprocess.Popen, state_file, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        try:
            if len(json.loads(state_file.read_text())["chunks"]) >= count:
                return
        except (OSError, json.JSONDecodeError, KeyError):
            pass  # not written yet (the file itself is replaced atomically)
        time.sleep(0.01)
    raise AssertionError(f"no state with {count} chunks after {timeout} s")


def test_sigkill_after_chunk_2_resumes_at_chunk_3(tiny_checkpoints, tmp_path, dv81):
    ref, ref_video = dv81
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cosmos_cli", "generate", "--checkpoint-dir", str(tiny_checkpoints),
           "--ar-model-dir", TINY_AR_DIR, *dv_argv(out, "cut", 81)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "COSMOS_CLI_NO_PROGRESS": "1"}
    state_dir = out / "cut" / STATE_DIR
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            _wait_for_chunks(proc, state_dir / STATE_FILE, 2)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "cut" / "cut.mp4").exists() and not (out / "cut" / "generation.json").exists()
    state = json.loads((state_dir / STATE_FILE).read_text())
    assert [c["frames"] for c in state["chunks"]] == [[0, 33], [33, 57]]
    _check_chunk_2_continues_chunk_1(tiny_checkpoints, state_dir)

    assert generate(tiny_checkpoints, *dv_argv(out, "cut", 81)) == 0  # the same command again
    resumed = record(out / "cut")
    assert [c.get("resumed", False) for c in resumed["chunks"]] == [True, True, False]
    assert [c["frames_sha256"] for c in resumed["chunks"]] == [c["frames_sha256"] for c in ref["chunks"]]
    assert np.array_equal(read_mp4(out / "cut" / "cut.mp4"), ref_video)
    assert not state_dir.exists()


def _check_chunk_2_continues_chunk_1(checkpoints, state_dir) -> None:
    """The method, from the saved chunks: chunk 2's context is the DV re-encoding of the last 9 frames of
    chunk 1 (decoded pixels), and its 24 new frames are its decode minus the 9 that re-render that context."""
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.pipeline.pipeline import _to_model_video, _to_uint8
    from cosmos_cli.stages.ar_model import resolve_model_args
    from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage

    layout = CheckpointLayout(checkpoints, TINY_AR_DIR)
    args = resolve_model_args(layout.ar_dir)
    stage = VideoTokenizerStage(layout.dv_encoder, layout.dv_decoder, levels=args.fsq_levels, dtype=torch.float32)
    stage.load(torch.device("cpu"))
    with np.load(state_dir / "chunk_000.npz") as first, np.load(state_dir / "chunk_001.npz") as second:
        frames0, frames1, tokens1 = first["frames"], second["frames"], torch.from_numpy(second["tokens"])
    assert frames0.shape[0] == 33 and frames1.shape[0] == 24 and tuple(tokens1.shape) == tuple(args.latent_shape)
    context = stage.encode(_to_model_video(frames0[-9:], 33))[0]
    assert torch.equal(tokens1[:2], context[:2])  # the last 9 decoded frames, re-encoded, are the prompt
    decoded = _to_uint8((stage.decode(tokens1[None])[0].float() * 0.5 + 0.5).clamp(0, 1))
    assert np.array_equal(decoded[9:], frames1)  # the 24 new frames, and only those, join the video
    assert frames_sha256(decoded[:9]) != frames_sha256(frames0[-9:])  # the dropped 9 re-render (lossy) the context
