"""``generate --backend nemo``: NVIDIA's NeMo video2world script run through our CLI.

The real script needs the NeMo container and a GPU, neither of which is here. It is replaced by a stand-in
with the same command line (``tests/nemo_script_standin``), copied into a temporary "Cosmos checkout" and
launched by the production code exactly as the real one would be: real torchrun (``python -m
torch.distributed.run``), real cwd, real environment, a real mp4 written by imageio. What is checked: the
command built from our flags, the refusals before launching, the missing container pieces, filing the
video (atomic, frame count) with ``generation.json``, the streamed log, and the script's failures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from cosmos_cli.errors import BadInput
from cosmos_cli.nemo import script
from cosmos_cli.request import GenerateRequest, LaunchRequest, SampleRequest, pipeline_config, validate
from tests.clip_factory import make_clip
from tests.conftest import REPO

STANDIN = REPO / "tests" / "nemo_script_standin"
HF_5B = "nvidia/Cosmos-1.0-Autoregressive-5B-Video2World"


@pytest.fixture
def box(tmp_path) -> dict[str, Path]:
    """A private Cosmos checkout (the stand-in), a stand-in NeMo "container", an input clip and an image."""
    repo = tmp_path / "cosmos"
    shutil.copytree(STANDIN / "cosmos1", repo / "cosmos1")
    shutil.copytree(STANDIN / "container", tmp_path / "container")
    work = tmp_path / "work"
    work.mkdir()
    make_clip(work / "clip.mp4", 12, 64, 48)
    import imageio.v2 as imageio
    import numpy as np

    imageio.imwrite(work / "still.png", np.full((48, 64, 3), 100, np.uint8))
    return {"repo": repo, "container": tmp_path / "container", "work": work, "tmp": tmp_path}


def environ(box, **extra: str | None) -> dict[str, str]:
    """The environment of a user inside the container: HF_HOME (relative, on purpose), the checkout, NeMo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVTE_", "STANDIN_"))}
    env.update(PYTHONPATH=f"{REPO}:{box['container']}", HF_HOME="hf", COSMOS_REPO_DIR=str(box["repo"]),
               COSMOS_CLI_NO_PROGRESS="1", OMP_NUM_THREADS="1",
               STANDIN_STARTED_FILE=str(box["tmp"] / "started"))  # fmt: skip
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def nemo_generate(box, *args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``cosmos-cli generate --backend nemo`` from the user's folder, output dir relative to it."""
    argv = [sys.executable, "-m", "cosmos_cli", "generate", "--backend", "nemo", *args]
    return subprocess.run(argv, cwd=box["work"], env=env or environ(box), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def error_line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    """Our one error line; no traceback of ours (the script's own, streamed from its log, may be there)."""
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, out.stderr
    assert f'File "{REPO / "cosmos_cli"}' not in out.stderr and "Traceback" not in out.stderr.split("error: ")[-1]
    return lines[0]


def frames_of(video: Path) -> tuple[int, tuple[int, int]]:
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    reader.close()
    return imageio_ffmpeg.count_frames_and_secs(str(video))[0], tuple(meta["size"])


def no_leftovers(box, out: Path) -> None:
    """Nothing written into the checkout, no staging folder left in the output."""
    assert sorted(p.name for p in box["repo"].iterdir()) == ["cosmos1"]
    assert not list(box["repo"].rglob("*.mp4"))
    assert not list(out.rglob(".*partial*")) if out.exists() else True


# ---- the command ---------------------------------------------------------------------------------------
def request_for(visual: Path, output_dir: Path, *, given: frozenset[str] = frozenset(), samples=None,
                launch: LaunchRequest | None = None, batch_size=None, gpu_memory_budget=None,
                **config) -> GenerateRequest:  # fmt: skip
    """The request ``generate`` builds (``given``: flags the user typed, as typer reports them)."""
    cfg = pipeline_config(checkpoint_dir=Path("checkpoints"), ar_model_dir=HF_5B.split("/")[1], **config)
    samples = samples or [SampleRequest(prompt="a red car", visual_input=visual)]
    return validate(GenerateRequest(samples=samples, pipeline=cfg, output_dir=output_dir,
                                    launch=launch or LaunchRequest(), batch_size=batch_size, backend="nemo",
                                    gpu_memory_budget=gpu_memory_budget, given_flags=given))  # fmt: skip


def test_the_command_is_nvidias_torchrun_line_with_its_flag_names_and_types(box, monkeypatch):
    monkeypatch.chdir(box["work"])
    monkeypatch.setenv("HF_HOME", "hf")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    for name in script.NVTE_REQUIRED:
        monkeypatch.delenv(name, raising=False)
    request = request_for(Path("clip.mp4"), Path("out"), temperature=2.0, top_p=0.9)
    sample = request.to_samples()[0]
    run = script.build_run(request, sample, box["repo"], HF_5B)
    argv = run.argv_for(Path("out/x.mp4"))
    assert argv[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                        "--nproc-per-node=1", str(script.SCRIPT)]  # fmt: skip
    assert str(script.SCRIPT) == "cosmos1/models/autoregressive/nemo/inference/video2world.py"
    flags = dict(zip(argv[7::2], argv[8::2], strict=True))
    assert flags == {
        "--input_type": "video",
        "--input_image_or_video_path": str(box["work"] / "clip.mp4"),
        "--prompt": "a red car",
        "--ar_model_dir": HF_5B,
        "--top_p": "0.9",
        "--temperature": "2",  # an int: NVIDIA's argparse says type=int
        "--video_save_name": str(box["work"] / "out" / "x.mp4"),  # absolute: the script's cwd is the checkout
    }
    assert run.cwd == box["repo"]
    assert run.env["NVTE_FLASH_ATTN"] == "1" and run.env["NVTE_FUSED_ATTN"] == run.env["NVTE_UNFUSED_ATTN"] == "0"
    assert run.env["HF_HOME"] == str(box["work"] / "hf")
    assert run.env["PYTHONPATH"] == f"{box['repo']}:/elsewhere"
    assert "cd " + str(box["repo"]) in run.command_line(Path("out/x.mp4"))


def test_defaults_and_switches_map_to_the_scripts_flags(box, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(box["tmp"] / "hf"))
    request = request_for(box["work"] / "still.png", box["tmp"], guardrail="off", disable_diffusion_decoder=True)
    run = script.build_run(request, request.to_samples()[0], box["repo"], HF_5B)
    flags = run.argv[7:]
    assert flags[flags.index("--input_type") + 1] == "image"
    assert flags[flags.index("--top_p") + 1] == "0.8"  # our "model's value" is the script's own default here
    assert flags[flags.index("--temperature") + 1] == "1"
    assert "--disable_diffusion_decoder" in flags
    assert flags[flags.index("--guardrail_dir") + 1] == ""  # the script skips its guardrail on an empty name


@pytest.mark.parametrize("value", [0.7, 0.0, 1.5, float("inf")])
def test_temperature_must_be_a_whole_number_of_one_or_more(value):
    with pytest.raises(BadInput, match="whole temperatures"):
        script.script_temperature(value)


def test_whole_temperatures_become_ints():
    assert script.script_temperature(1.0) == 1 and script.script_temperature(3.0) == 3


# ---- refusals before launching ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"launch": LaunchRequest(tp=2)}, "--tp 2"),
        ({"launch": LaunchRequest(gpus=2)}, "--gpus"),
        ({"given": frozenset({"seed"})}, "--seed"),
        ({"dd_seed": 3}, "--dd-seed"),
        ({"quantization": "int8"}, "--quantization int8"),
        ({"decoding": "scd"}, "--decoding scd"),
        ({"guardrail": "blocklist"}, "no text guardrail"),
        ({"offload_all": True}, "--offload"),
        ({"gpu_memory_budget": 20.0}, "--gpu-memory-budget"),
        ({"load_format": "dummy"}, "--load-format dummy"),
        ({"text_encoder_dtype": "fp32"}, "--text-encoder-dtype"),
        ({"fps": 30.0}, "--fps 30"),
        ({"pad": True}, "--pad"),
        ({"device": "cuda:1"}, "--device"),
        ({"batch_size": 4, "given": frozenset({"batch_size"})}, "--batch-size"),
        ({"given": frozenset({"rdzv_endpoint"})}, "--rdzv"),
    ],
)
def test_what_the_script_cannot_honour_is_refused(box, kwargs, words):
    request = request_for(box["work"] / "clip.mp4", box["tmp"], **kwargs)
    with pytest.raises(BadInput, match="NVIDIA's NeMo") as err:
        script.check_request(request)
    assert words in err.value.one_line() and "--backend cosmos-cli" in err.value.one_line()


def test_a_setting_added_later_is_refused_not_dropped(box, monkeypatch):
    """Any PipelineConfig field the script knows nothing of, away from its default, is refused."""
    request = request_for(box["work"] / "clip.mp4", box["tmp"])
    monkeypatch.setattr(script, "HONOURED", script.HONOURED - {"scd_window"})
    request.pipeline.scd_window = 8
    with pytest.raises(BadInput, match="--scd-window 8: NVIDIA's NeMo script has no such setting"):
        script.check_request(request)


@pytest.mark.parametrize(
    "sample, words",
    [
        (SampleRequest(prompt="p", num_frames=57), "--num-frames 57"),
        (SampleRequest(prompt="p", seed=3), "seed 3"),
        (SampleRequest(prompt="p", temperature=0.5), "--temperature 0.5"),
        (SampleRequest(prompt="p", num_input_frames=1), "--num-input-frames 1"),
        (SampleRequest(prompt=""), "no prompt"),
    ],
)
def test_per_sample_values_are_refused(box, sample, words):
    sample.visual_input = box["work"] / "clip.mp4"
    with pytest.raises(BadInput, match="NVIDIA's NeMo") as err:
        script.check_request(request_for(sample.visual_input, box["tmp"], samples=[sample]))
    assert words in err.value.one_line()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--temperature", "0.7"], "--temperature 0.7: NVIDIA's NeMo script takes only whole temperatures"),
        (["--tp", "2"], "--tp 2: NVIDIA's NeMo script runs with tensor parallelism 1 only"),
        (["--seed", "0"], "--seed: NVIDIA's NeMo script has no seed"),
        (["--num-frames", "57"], "--num-frames 57: NVIDIA's NeMo script makes 33 frames only"),
    ],
)
def test_the_cli_refuses_in_one_line_before_launching(box, args, words):
    out = nemo_generate(box, "-i", "clip.mp4", "-p", "a car", "-o", "out", *args)
    assert words in error_line(out)
    assert not (box["tmp"] / "started").exists() and not (box["work"] / "out").exists()


def test_a_jsonl_line_with_a_seed_is_refused_naming_the_line(box):
    (box["work"] / "batch.jsonl").write_text(
        json.dumps({"prompt": "a", "visual_input": "clip.mp4"}) + "\n"
        + json.dumps({"prompt": "b", "visual_input": "clip.mp4", "seed": 7}) + "\n"
    )  # fmt: skip
    line = error_line(nemo_generate(box, "--batch-input", "batch.jsonl", "-o", "out"))
    assert "001_clip: seed 7: NVIDIA's NeMo script has no seed" in line
    assert not (box["tmp"] / "started").exists()


def test_cosmos_repo_without_the_nemo_backend_is_refused(box):
    argv = [sys.executable, "-m", "cosmos_cli", "generate", "-i", "clip.mp4", "-p", "x", "--cosmos-repo", "."]
    out = subprocess.run(argv, cwd=box["work"], env=environ(box), capture_output=True, text=True, timeout=120)
    assert "--cosmos-repo is for --backend nemo" in error_line(out)


def test_an_unknown_backend_is_one_rule_line():
    with pytest.raises(BadInput, match="--backend must be cosmos-cli or nemo"):
        validate(GenerateRequest(samples=[], pipeline=pipeline_config(checkpoint_dir=Path("c"), ar_model_dir="x"),
                                 output_dir=Path("o"), backend="vllm"))  # fmt: skip


# ---- what the container must have ----------------------------------------------------------------------------
def test_missing_pieces_are_one_line_naming_them(box):
    base = ["-i", "clip.mp4", "-p", "a car", "-o", "out"]
    (box["tmp"] / "empty").mkdir()
    cases = [
        ({"COSMOS_REPO_DIR": str(box["tmp"] / "nowhere")}, "does not exist"),
        ({"COSMOS_REPO_DIR": str(box["tmp"] / "empty")}, f"NVIDIA's NeMo script {script.SCRIPT} is missing"),
        ({"PYTHONPATH": str(REPO)}, "NVIDIA NeMo (the nemo package) not found for"),
        ({"COSMOS_CLI_NEMO_PYTHON": str(box["tmp"] / "no-python")}, "cannot run the Python for NVIDIA's NeMo script"),
        ({"HF_HOME": None}, "HF_HOME is not set"),
        ({"NVTE_FUSED_ATTN": "1"}, "NVTE_FUSED_ATTN=1: NVIDIA's NeMo script asserts NVTE_FUSED_ATTN is unset or 0"),
    ]  # fmt: skip
    for extra, words in cases:
        out = nemo_generate(box, *base, env=environ(box, **extra))
        assert words in error_line(out), extra
    assert not (box["tmp"] / "started").exists()
    assert not (box["work"] / "out").exists()


def test_a_python_without_torch_lacks_torchrun(box):
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("no system python3 without torch here")
    env = environ(box, COSMOS_CLI_NEMO_PYTHON=bare)
    out = nemo_generate(box, "-i", "clip.mp4", "-p", "a car", "-o", "out", env=env)
    assert f"torchrun (torch.distributed.run) not found for {bare}" in error_line(out)  # its nemo: the stand-in


def test_a_nemo_checkpoint_folder_is_passed_as_its_root(tmp_path):
    from tests.nemo_fixtures import SPEC_V2W, random_state, write_fixture

    folder = tmp_path / "ckpt" / "my-post-trained"
    write_fixture(folder, SPEC_V2W, random_state(SPEC_V2W), with_decoys=False)
    with pytest.raises(BadInput, match="no context/io.json"):  # ours: NeMo's script loads NeMo's io.json
        script.ar_model_arg(tmp_path / "ckpt", "my-post-trained")
    (folder / "context" / "io.json").write_text("{}")
    assert script.ar_model_arg(tmp_path / "ckpt", "my-post-trained") == str(folder.resolve())
    assert script.ar_model_arg(tmp_path / "ckpt", "my-post-trained/weights") == str(folder.resolve())
    assert script.ar_model_arg(tmp_path / "ckpt", "Cosmos-1.0-Autoregressive-5B-Video2World") == HF_5B
    with pytest.raises(BadInput, match="base model"):
        script.ar_model_arg(tmp_path / "ckpt", "Cosmos-1.0-Autoregressive-4B")
    with pytest.raises(BadInput, match="is not a NeMo checkpoint"):
        script.ar_model_arg(tmp_path / "ckpt", "Cosmos-1.0-Autoregressive-Tiny-Video2World")


# ---- running it ------------------------------------------------------------------------------------------
def test_a_run_files_the_video_and_its_record_and_streams_the_log(box):
    """Relative --output-dir and HF_HOME (the script runs in the checkout); the stand-in waits after its
    first inference line until we have seen that line on our stderr: only a streamed log gets past it."""
    wait = box["tmp"] / "seen-inference-line"
    env = environ(box, STANDIN_WAIT_FILE=str(wait))
    argv = [sys.executable, "-m", "cosmos_cli", "generate", "--backend", "nemo", "-i", "clip.mp4", "-p", "a car",
            "-o", "out", "--temperature", "2", "--top-p", "0.9"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=box["work"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr = []
    for line in proc.stderr:
        stderr.append(line)
        if "Running Inference to generate 7680 tokens" in line:
            wait.touch()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=180) == 0, "".join(stderr)
    elapsed = time.monotonic() - started
    text = "".join(stderr)
    assert wait.exists() and "standin: the wait file appeared" in text
    assert "runs the video guardrail only" in text  # said, not silently dropped

    folder = box["work"] / "out" / "clip"
    video = folder / "clip.mp4"
    assert stdout.strip() == str(video)
    assert frames_of(video) == (33, (1024, 640))
    record = json.loads((folder / "generation.json").read_text())
    assert record["status"] == "succeeded" and record["backend"] == "nemo" and record["exit_code"] == 0
    assert "torch.distributed.run --standalone --nnodes=1 --nproc-per-node=1" in record["command"]
    assert "--temperature 2" in record["command"] and "--top_p 0.9" in record["command"]
    assert record["cwd"] == str(box["repo"]) and record["output"]["frames"] == 33
    timings = record["timings_s"]
    assert set(timings) == {"startup", "ar_model", "decode", "video_guardrail", "save", "total"}
    assert 0 < timings["total"] <= elapsed
    log = (folder / "nemo.log").read_text()
    seen_env = json.loads(log.split("standin-env: ")[1].splitlines()[0])
    assert seen_env == {"HF_HOME": str(box["work"] / "hf"), "NVTE_FLASH_ATTN": "1", "NVTE_FUSED_ATTN": "0",
                        "NVTE_UNFUSED_ATTN": "0"}  # fmt: skip
    seen_args = json.loads(log.split("standin-args: ")[1].splitlines()[0])
    assert Path(seen_args[seen_args.index("--video_save_name") + 1]).is_absolute()
    no_leftovers(box, box["work"] / "out")

    (box["tmp"] / "started").unlink()
    again = nemo_generate(box, "-i", "clip.mp4", "-p", "a car", "-o", "out", "--temperature", "2", "--top-p", "0.9")
    assert again.returncode == 0 and "already done" in again.stdout
    assert not (box["tmp"] / "started").exists()  # the same request is not run again
    other = nemo_generate(box, "-i", "clip.mp4", "-p", "another prompt", "-o", "out")
    assert "already exists for another request" in error_line(other)


@pytest.mark.parametrize(
    "mode, code, script_code, words",
    [
        ("fail", 1, 1, "script failed with exit code 1: RuntimeError: CUDA out of memory (stand-in failure)"),
        ("block", 4, 1, "the guardrail blocked the generated video"),
        ("no_video", 1, 0, "exited 0 but wrote no video"),
        ("short_video", 1, 0, "wrote 20 frames, not 33"),
    ],
)  # fmt: skip
def test_a_failing_script_is_a_failing_run_with_no_video(box, mode, code, script_code, words):
    out = nemo_generate(box, "-i", "clip.mp4", "-p", "a car", "-o", "out", env=environ(box, STANDIN_MODE=mode))
    line = error_line(out, code)
    assert words in line and "ImportError" not in line  # the last error line of the whole log, not the first
    folder = box["work"] / "out" / "clip"
    assert (box["tmp"] / "started").exists() and not (folder / "clip.mp4").exists()
    record = json.loads((folder / "generation.json").read_text())
    assert record["status"] in ("failed", "blocked") and record["video"] is None
    assert record["exit_code"] == script_code
    no_leftovers(box, box["work"] / "out")


def test_sigterm_stops_the_script_and_leaves_nothing_half_written(box):
    """A real SIGTERM while the script runs: torchrun and its worker are stopped, no video, exit 143."""

    argv = [sys.executable, "-m", "cosmos_cli", "generate", "--backend", "nemo", "-i", "clip.mp4", "-p", "a car",
            "-o", "out"]  # fmt: skip
    env = environ(box, STANDIN_WAIT_FILE=str(box["tmp"] / "never"))
    proc = subprocess.Popen(argv, cwd=box["work"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = None
    for line in proc.stderr:
        if line.startswith("standin-pid: "):
            worker = int(line.split()[1])
        if "Running Inference" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 143, rest
    assert "interrupted by SIGTERM: 0 of 1 sample(s) done" in rest
    assert worker is not None
    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, "the script's worker outlived us"
        time.sleep(0.1)
    assert not (box["work"] / "out" / "clip" / "clip.mp4").exists()
    no_leftovers(box, box["work"] / "out")


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_jsonl_batch_is_one_script_run_per_line_with_a_summary(box):
    (box["work"] / "batch.jsonl").write_text(
        json.dumps({"prompt": "a", "visual_input": "clip.mp4"}) + "\n"
        + json.dumps({"prompt": "b", "visual_input": "still.png", "temperature": 2}) + "\n"
    )  # fmt: skip
    out = nemo_generate(box, "--batch-input", "batch.jsonl", "-o", "out", "--guardrail", "off")
    assert out.returncode == 0, out.stderr
    names = ["000_clip", "001_still"]
    assert out.stdout.split() == [str(box["work"] / "out" / n / f"{n}.mp4") for n in names]
    summary = json.loads((box["work"] / "out" / "summary.json").read_text())
    assert summary["backend"] == "nemo" and [s["status"] for s in summary["samples"]] == ["succeeded"] * 2
    image = json.loads((box["work"] / "out" / "001_still" / "generation.json").read_text())
    assert "--input_type image" in image["command"] and "--temperature 2" in image["command"]
    assert "--guardrail_dir ''" in image["command"]
    log = (box["work"] / "out" / "001_still" / "nemo.log").read_text()
    assert "generate 10240 tokens" in log and "Running guardrails" not in log
    assert "video_guardrail" not in image["timings_s"]
