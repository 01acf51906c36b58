"""NVIDIA's NeMo video2world script as a command line: what it takes, built from a generate request.

``generate --backend nemo`` runs ``cosmos1/models/autoregressive/nemo/inference/video2world.py`` from an
NVIDIA Cosmos checkout inside the NeMo container (``shared/spec/nemo.md`` section 4). The script is far
narrower than our engine: one input per run, 33 frames, TP 1, no seed, an *integer* ``--temperature``, no
offloading, only the video guardrail. Everything it cannot honour is refused here, with one line, before
anything is launched: an hour-long NeMo run that ignores half of the request is the worst outcome.

This module only decides (checks, argv, environment); :mod:`cosmos_cli.nemo.backend` runs and files.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_cli import settings
from cosmos_cli.checkpoints import AR_MODEL_DIRS, CheckpointLayout
from cosmos_cli.errors import BadInput, CosmosError

SCRIPT = Path("cosmos1/models/autoregressive/nemo/inference/video2world.py")
"""The script, relative to the Cosmos repository root (its cwd)."""
CONTAINER = "nvcr.io/nvidia/nemo:25.02.rc3"
HF_MODELS = {AR_MODEL_DIRS["5b-video2world"], AR_MODEL_DIRS["13b-video2world"]}
"""The Video2World names the script downloads (``nvidia/<name>``, its ``nemo/`` subfolder) into HF_HOME."""
BASE_MODELS = {AR_MODEL_DIRS["4b"], AR_MODEL_DIRS["12b"]}
DEFAULT_TOP_P = 0.8
"""The script's own ``--top_p`` default (its README says 0.9; the code says 0.8)."""
FRAMES = 33
FPS = 25.0
NVTE_REQUIRED = {"NVTE_FLASH_ATTN": "1", "NVTE_FUSED_ATTN": "0", "NVTE_UNFUSED_ATTN": "0"}
"""megatron-core asserts these (unset or exactly these values) for the script's flash attention backend,
then sets them; we set them for the child so the run's record says which attention ran."""
USE_OURS = "or use --backend cosmos-cli"


@dataclass(frozen=True)
class ScriptRun:
    """One run of NVIDIA's script: argv (without the output name), working folder, the variables we add."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    """Only the variables we set or pass on deliberately (the child gets the rest of ours too)."""
    request: dict = field(default_factory=dict)
    """What the video depends on (script flags but the output name, input hash): a re-run's identity."""

    def argv_for(self, video_save_name: Path) -> list[str]:
        """The full argv, writing the video to ``video_save_name``, made absolute: the script runs in the
        Cosmos checkout and resolves a relative name there."""
        return [*self.argv, "--video_save_name", str(Path(video_save_name).resolve())]

    def command_line(self, video_save_name: Path) -> str:
        """The run as one line a user can paste (``cd`` and variables included)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"cd {shlex.quote(str(self.cwd))} && {env} {shlex.join(self.argv_for(video_save_name))}"


def python_exe() -> str:
    """The interpreter that runs torchrun and the script: ``$COSMOS_CLI_NEMO_PYTHON``, else this one (inside
    the NeMo container cosmos-cli is installed into the container's Python, which has NeMo)."""
    return settings.nemo_python() or sys.executable


def torchrun_argv(script: Path = SCRIPT) -> list[str]:
    """``torchrun --nproc-per-node=1 <script>`` as NVIDIA runs it, as ``python -m torch.distributed.run``
    (the same program as the ``torchrun`` entry point, from the chosen interpreter, whatever is on PATH) with
    ``--standalone``: a private rendezvous on a free port, where bare torchrun takes 127.0.0.1:29500 and
    fails if that port is busy."""
    return [python_exe(), "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc-per-node=1",
            str(script)]  # fmt: skip


# ---- refusals -------------------------------------------------------------------------------------
HONOURED = frozenset({"checkpoint_dir", "ar_model_dir", "top_p", "temperature", "guardrail", "diffusion_decoder",
                      "batch_size", "compile", "preload", "dd_parallel", "chunk_size", "scd_window"})  # fmt: skip
"""PipelineConfig fields the script honours, or that only change how fast our own engine is (compile,
preloading, chunking, the SCD window without SCD). Every other field set to anything but its default is
refused, so that a setting added to our engine later is never silently dropped here."""


def check_request(request) -> None:
    """Refuse, with one line, every part of a :class:`~cosmos_cli.request.GenerateRequest` the script
    cannot honour (per-sample values of a JSONL batch included)."""
    config, launch, given = request.pipeline, request.launch, request.given_flags
    refusals = [
        (launch.tp not in (None, 1), f"--tp {launch.tp}: NVIDIA's NeMo script runs with tensor parallelism 1 only"),
        (launch.gpus > 1 or launch.nnodes > 1, "--gpus/--nnodes: NVIDIA's NeMo video2world script is one process"),
        (bool({"node_rank", "rdzv_endpoint", "rdzv_backend"} & given),
         "--node-rank/--rdzv-*: NVIDIA's NeMo video2world script is one process on one node"),
        ("seed" in given, "--seed: NVIDIA's NeMo script has no seed (every run differs)"),
        (config.dd_seed is not None, "--dd-seed: NVIDIA's NeMo script has no seed (every run differs)"),
        (config.quantization != "bf16", f"--quantization {config.quantization}: NVIDIA's NeMo script runs bf16 only"),
        (config.decoding != "sequential", f"--decoding {config.decoding}: NVIDIA's NeMo script decodes sequentially"),
        (config.guardrail == "blocklist", "--guardrail blocklist: NVIDIA's NeMo script has no text guardrail"),
        (bool(config.placements) or request.gpu_memory_budget is not None,
         "--offload*/--placement/--gpu-memory-budget: NVIDIA's NeMo script keeps every model on the GPU"),
        (config.load_format != "auto", f"--load-format {config.load_format}: NVIDIA's NeMo script loads real weights"),
        (config.text_encoder_dtype is not None, "--text-encoder-dtype: NVIDIA's NeMo script chooses T5's dtype"),
        (config.fps != FPS, f"--fps {config.fps:g}: NVIDIA's NeMo script writes {FPS:g} fps"),
        (config.pad, "--pad: NVIDIA's NeMo script does not pad short clips"),
        (config.device is not None, "--device: NVIDIA's NeMo script uses the first visible GPU (CUDA_VISIBLE_DEVICES)"),
        ("batch_size" in given and (request.batch_size or 1) > 1, "--batch-size: NVIDIA's NeMo script runs batch 1"),
    ]  # fmt: skip
    for refused, message in refusals:
        if refused:
            raise BadInput(message, f"drop it, {USE_OURS}")
    _refuse_unknown(config)
    for sample in request.samples:
        check_sample(sample, config, f"{sample.name}: " if request.batch_input is not None else "")


def _refuse_unknown(config) -> None:
    """Any other PipelineConfig field away from its default: the script has no such setting."""
    from cosmos_cli.request import flag_name

    checked = {"dd_seed", "quantization", "decoding", "placements", "load_format", "text_encoder_dtype", "fps",
               "pad", "device"}  # fmt: skip
    for f in dataclasses.fields(config):
        if f.name in HONOURED or f.name in checked:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(config, f.name)
        if default is not dataclasses.MISSING and value != default:
            raise BadInput(f"{flag_name(f.name)} {value}: NVIDIA's NeMo script has no such setting",
                           f"drop it, {USE_OURS}")  # fmt: skip


def check_sample(sample, config, where: str = "") -> None:
    """The per-sample values: a prompt, 33 frames, no seed, an integer temperature of 1 or more, 9 context
    frames of a video."""
    if not sample.prompt:
        raise BadInput(f"{where}no prompt: NVIDIA's NeMo video2world script needs one (its T5 encodes it)",
                       'add --prompt "..." (or a "prompt" on every JSONL line)')  # fmt: skip
    if sample.num_frames != FRAMES:
        raise BadInput(f"{where}--num-frames {sample.num_frames}: NVIDIA's NeMo script makes {FRAMES} frames only",
                       f"use --num-frames {FRAMES}, {USE_OURS}")  # fmt: skip
    if sample.seed != 0:
        raise BadInput(f"{where}seed {sample.seed}: NVIDIA's NeMo script has no seed", f"drop it, {USE_OURS}")
    script_temperature(sample.temperature if sample.temperature is not None else config.temperature)
    if sample.num_input_frames != 9 and sample.visual_input is not None and _kind(sample.visual_input) == "video":
        raise BadInput(f"--num-input-frames {sample.num_input_frames}: NVIDIA's NeMo script takes 9 frames of a video",
                       f"use 9 (or an image for 1 frame), {USE_OURS}")  # fmt: skip


def script_temperature(value: float) -> int:
    """Our temperature as the script's ``--temperature`` (``type=int``): a whole number of 1 or more.
    0.7 is "invalid int value" there, and 0 divides by zero (its greedy mode, top_k=1, is not exposed)."""
    if not (math.isfinite(value) and value == int(value) and value >= 1):
        raise BadInput(
            f"--temperature {value:g}: NVIDIA's NeMo script takes only whole temperatures of 1 or more",
            f"use --temperature 1 (its default), {USE_OURS}",
        )
    return int(value)


def check_environment() -> None:
    """The ``NVTE_*`` attention variables megatron-core asserts on, and ``HF_HOME``."""
    for name, value in settings.nvte_attention_env().items():
        if value != NVTE_REQUIRED[name]:
            raise BadInput(
                f"{name}={value}: NVIDIA's NeMo script asserts {name} is unset or {NVTE_REQUIRED[name]} "
                "(its flash attention backend)",
                f"unset {name}",
            )
    if settings.hf_home() is None:
        raise BadInput(
            "HF_HOME is not set: NVIDIA's NeMo script fetches T5, the tokenizers, the diffusion decoder and the "
            "guardrail into it at run time",
            "export HF_HOME=/a/folder/with/space (pre-filled by NVIDIA's download_autoregressive_nemo.py)",
        )


def find_script(repo_flag: Path | None) -> Path:
    """The Cosmos checkout holding the script (absolute), or one line naming what is missing."""
    repo = settings.cosmos_repo_dir(repo_flag).resolve()
    how = f"point --cosmos-repo (or {settings.ENV_COSMOS_REPO}) at NVIDIA's Cosmos checkout"
    if not repo.is_dir():
        raise BadInput(f"Cosmos repository {repo} does not exist", how)
    if not (repo / SCRIPT).is_file():
        raise BadInput(f"NVIDIA's NeMo script {SCRIPT} is missing in {repo}", how)
    return repo


CONTAINER_PROBE = """
import importlib.util, os, sys
missing = []
torch = importlib.util.find_spec("torch")
if torch is None or not os.path.isfile(os.path.join(torch.submodule_search_locations[0], "distributed", "run.py")):
    missing.append("torchrun (torch.distributed.run)")
if importlib.util.find_spec("nemo") is None:
    missing.append("NVIDIA NeMo (the nemo package)")
print("; ".join(missing))
sys.exit(3 if missing else 0)
"""
"""Asked in a child with the script's interpreter and environment: importing NeMo or torch takes seconds,
finding them does not."""


def check_container(repo: Path, env: dict[str, str]) -> None:
    """torchrun and NeMo must be there for the interpreter that runs the script, with the script's
    environment; else one line naming what is missing."""
    python = python_exe()
    how = f"run cosmos-cli inside {CONTAINER} (or point {settings.ENV_NEMO_PYTHON} at its python), {USE_OURS}"
    try:
        done = subprocess.run([python, "-c", CONTAINER_PROBE], cwd=repo, env={**settings.child_environ(), **env},
                              capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CosmosError(f"cannot run the Python for NVIDIA's NeMo script, {python} ({err})", how) from err
    if done.returncode != 0:
        missing = done.stdout.strip() or (done.stderr.strip().splitlines() or ["it failed"])[-1]
        raise CosmosError(f"{missing} not found for {python}: NVIDIA's NeMo script needs the NeMo container", how)


# ---- the command ----------------------------------------------------------------------------------
def ar_model_arg(checkpoint_dir: Path, ar_model_dir: str) -> str:
    """``--ar_model_dir`` for the script: a NeMo checkpoint folder (absolute; it must hold NeMo's
    ``context/io.json``, which the script loads), or the ``nvidia/`` Hugging Face name it downloads."""
    from cosmos_cli.nemo.layout import find_nemo

    layout = CheckpointLayout(Path(checkpoint_dir), ar_model_dir)
    candidates = [layout.ar_dir, layout.ar_dir / "nemo"]
    for path in candidates:
        nemo = find_nemo(path)
        if nemo is None:
            continue
        if not (nemo.root / "context" / "io.json").is_file():
            raise BadInput(
                f"{nemo.root} has no context/io.json, which NVIDIA's NeMo script loads "
                "(cosmos-cli convert-checkpoint --to nemo does not write it)",
                f"use a checkpoint saved by NeMo, {USE_OURS}",
            )
        return str(nemo.root.resolve())
    name = Path(ar_model_dir).name
    if name in BASE_MODELS:
        raise BadInput(f"{name} is a base model: NVIDIA's NeMo video2world script runs Video2World models",
                       f"use Cosmos-1.0-Autoregressive-5B-Video2World, {USE_OURS}")  # fmt: skip
    if name in HF_MODELS and ar_model_dir in (name, f"nvidia/{name}"):
        return f"nvidia/{name}"
    raise BadInput(
        f"{layout.ar_dir} is not a NeMo checkpoint (NVIDIA's NeMo script reads a folder with context/ and "
        "weights/, or downloads nvidia/Cosmos-1.0-Autoregressive-5B-Video2World)",
        f"pass a NeMo checkpoint folder as --ar-model-dir, {USE_OURS}",
    )


def build_run(request, sample, repo: Path, ar_model: str) -> ScriptRun:
    """The script's argv for one sample (flag names and types as NVIDIA's argparse declares them)."""
    from cosmos_cli.io.video import input_kind

    config = request.pipeline
    visual = Path(sample.visual_input).resolve()
    top_p = sample.top_p if sample.top_p is not None else config.top_p
    top_p = DEFAULT_TOP_P if top_p is None else top_p
    temperature = script_temperature(sample.temperature if sample.temperature is not None else config.temperature)
    flags = ["--input_type", input_kind(visual), "--input_image_or_video_path", str(visual),
             "--prompt", sample.prompt, "--ar_model_dir", ar_model,
             "--top_p", repr(float(top_p)), "--temperature", str(temperature)]  # fmt: skip
    if config.diffusion_decoder is False:
        flags.append("--disable_diffusion_decoder")
    if config.guardrail == "off":
        flags += ["--guardrail_dir", ""]  # an empty name skips the video guardrail
    env = dict(NVTE_REQUIRED)
    env["HF_HOME"] = str(Path(settings.hf_home() or "").expanduser().resolve())  # absolute: the cwd is the repo
    env["PYTHONPATH"] = _pythonpath(repo)
    env["PYTHONUNBUFFERED"] = "1"  # its log lines reach our display as they are written
    argv = [*torchrun_argv(), *flags]
    identity = {"script_flags": flags, "ar_model_dir": ar_model, "input_sha256": _sha256(visual)}
    return ScriptRun(argv=argv, cwd=repo, env=env, request=identity)


def _pythonpath(repo: Path) -> str:
    """The repo root first (``torchrun script.py`` puts the script's own folder on sys.path, not the cwd,
    and the script imports ``cosmos1``), then whatever PYTHONPATH the user had."""
    current = settings.pythonpath()
    return str(repo) + (f":{current}" if current else "")


def _kind(path: Path) -> str:
    from cosmos_cli.io.video import input_kind

    return input_kind(Path(path))


def _sha256(path: Path) -> str:
    from cosmos_cli.pipeline.fingerprint import file_sha256

    return file_sha256(path)
