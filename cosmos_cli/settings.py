"""Every environment variable cosmos-cli reads, read here and only here (like huggingface_hub's ``constants``).

Each one is read when asked for (a function, not an import-time constant), so a test or a parent process that
sets a variable before calling in is honoured. The table in docs/settings.md lists them; keep the two in step.
Variables that huggingface_hub, torch or NCCL read themselves (``HF_TOKEN``, ``HF_HOME``, ``TORCHINDUCTOR_*``)
are theirs and not repeated here, except where we read them too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_CHECKPOINT_DIR = "COSMOS_CHECKPOINT_DIR"
ENV_DEBUG = "COSMOS_CLI_DEBUG"
ENV_NO_PROGRESS = "COSMOS_CLI_NO_PROGRESS"
ENV_API_KEY = "COSMOS_API_KEY"
ENV_HF_ENDPOINT = "HF_ENDPOINT"
ENV_HUB_TIMEOUT = "COSMOS_CLI_HUB_TIMEOUT"
ENV_LAUNCHED = "COSMOS_CLI_LAUNCHER"
"""Set by ``parallel.launch.relaunch`` for its workers: the launcher reports failures, the workers stay quiet."""
ENV_TORCHRUN_COMMAND = "COSMOS_CLI_TORCHRUN_COMMAND"
"""Set by ``generate`` for its workers: the torchrun command line, recorded in ``generation.json``."""
ENV_ERROR_FILE = "TORCHELASTIC_ERROR_FILE"
ENV_NVLS = "NCCL_NVLS_ENABLE"
ENV_INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
"""Inductor's cache folder: read here (the user's choice wins), set by ``compile_cache`` when unset."""

DEFAULT_CHECKPOINT_DIR = Path("checkpoints")
DEFAULT_HUB_TIMEOUT_S = 30.0

_TRUE = {"1", "true", "yes"}
_debug_flag = False


def _env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    return (os.environ if environ is None else environ).get(name)


def enable_debug(value: bool = True) -> bool:
    """``--debug`` (any verb, or before it; a typer callback): ``cli.main`` then re-raises with the traceback."""
    global _debug_flag
    if value:
        _debug_flag = True
    return value


def reset_debug() -> None:
    """Forget an earlier ``--debug`` (``cli.main`` starts each command line afresh)."""
    global _debug_flag
    _debug_flag = False


def debug() -> bool:
    """True under ``--debug`` or ``COSMOS_CLI_DEBUG=1``."""
    return _debug_flag or (_env(ENV_DEBUG) or "").lower() in _TRUE


def progress_disabled() -> bool:
    return _env(ENV_NO_PROGRESS) == "1"


def api_key() -> str | None:
    return (_env(ENV_API_KEY) or "").strip() or None


def hf_endpoint() -> str | None:
    """``HF_ENDPOINT`` as set now (huggingface_hub reads it once, at import), or None."""
    return _env(ENV_HF_ENDPOINT) or None


def hub_timeout_s() -> float:
    """Seconds ``download`` waits for the hub to answer one request before it gives up."""
    raw = _env(ENV_HUB_TIMEOUT)
    try:
        return float(raw) if raw else DEFAULT_HUB_TIMEOUT_S
    except ValueError:
        return DEFAULT_HUB_TIMEOUT_S


def rank() -> int:
    """torchrun's ``RANK`` (0 when not under torchrun)."""
    try:
        return int(_env("RANK") or 0)
    except ValueError:
        return 0


def world_size(default: int = 1) -> int:
    """torchrun's ``WORLD_SIZE`` (``default`` when not under torchrun)."""
    raw = _env("WORLD_SIZE")
    return int(raw) if raw else default


def torchrun_environ(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """torchrun's per-worker variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_*``), or None outside torchrun."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    found = {n: v for n in names if (v := _env(n, environ)) is not None}
    return found if "RANK" in found and "WORLD_SIZE" in found else None


def launched_by_us() -> bool:
    return _env(ENV_LAUNCHED) == "1"


def torchrun_command() -> str | None:
    return _env(ENV_TORCHRUN_COMMAND) or None


def error_file() -> str | None:
    return _env(ENV_ERROR_FILE) or None


def nvls_requested() -> str | None:
    """``NCCL_NVLS_ENABLE`` when set to anything but 0 (we turn NVLink multicast off and warn)."""
    value = _env(ENV_NVLS)
    return value if value not in (None, "0") else None


def inductor_cache_dir() -> Path | None:
    """``TORCHINDUCTOR_CACHE_DIR`` where set (and non-empty), else None: then ``compile_cache`` puts inductor's
    cache next to the checkpoints."""
    value = _env(ENV_INDUCTOR_CACHE)
    return Path(value) if value else None


# ---- `generate --backend nemo` (NVIDIA's NeMo script; docs/nemo.md) ----------------------------------
ENV_COSMOS_REPO = "COSMOS_REPO_DIR"
"""The NVIDIA Cosmos checkout whose NeMo script ``--backend nemo`` runs (default: the current folder)."""
ENV_HF_HOME = "HF_HOME"
ENV_PYTHONPATH = "PYTHONPATH"
NVTE_ATTENTION_VARS = ("NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN")
"""Transformer Engine's attention switches, which megatron-core checks against the model's backend."""


def cosmos_repo_dir(flag: Path | None = None) -> Path:
    """``--cosmos-repo``, else ``$COSMOS_REPO_DIR``, else the current folder (NVIDIA runs from the repo root)."""
    if flag is not None:
        return Path(flag)
    return Path(_env(ENV_COSMOS_REPO) or ".")


def hf_home() -> str | None:
    """``$HF_HOME`` where set (and non-empty), else None: NVIDIA's NeMo script fetches its models into it."""
    return _env(ENV_HF_HOME) or None


def pythonpath() -> str:
    """``$PYTHONPATH`` as set now ("" if unset): the NeMo script's child gets the Cosmos root in front."""
    return _env(ENV_PYTHONPATH) or ""


def nvte_attention_env() -> dict[str, str]:
    """The ``NVTE_*`` attention variables that are set in this environment."""
    return {name: value for name in NVTE_ATTENTION_VARS if (value := _env(name)) is not None}


def child_environ() -> dict[str, str]:
    """A copy of this process's environment, for a child process that gets a few variables more."""
    return dict(os.environ)


ENV_NEMO_PYTHON = "COSMOS_CLI_NEMO_PYTHON"
"""The Python (with NeMo) that runs torchrun and NVIDIA's NeMo script (default: the one running cosmos-cli)."""


def nemo_python() -> str | None:
    return _env(ENV_NEMO_PYTHON) or None
