"""Up-front check that the guardrail can run, so ``generate`` fails in a second, not after loading models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cosmos_cli.errors import BadInput, CosmosError, ModelNotDownloaded
from cosmos_cli.guardrail.layout import GuardrailLayout

GUARDRAIL_MODES = ("full", "blocklist", "off")
"""``full``: blocklist + Aegis on the prompt, video classifier + face pixelation on the frames (NVIDIA's set).
``blocklist``: only the keyword blocklist on the prompt; no LLM, no video checks. ``off``: nothing."""

GUARDRAIL_OFF_WARNING = (
    "guardrail is off: the prompt and the generated video are not checked and faces are not pixelated. "
    "The NVIDIA Open Model License (section 2.1, Conditions for Use) terminates your rights to use Cosmos "
    "if you bypass, disable or circumvent its guardrails without a substantially similar guardrail "
    "appropriate for your use case; providing one is now your responsibility."
)
"""Printed by ``generate --guardrail off`` and ``serve --guardrail off``."""

_EXTRA_HINT = "run: pip install 'cosmos-ar-cli[guardrail]'"
_PACKAGES = {"blocklist": ("better_profanity", "nltk"), "full": ("better_profanity", "nltk", "peft")}


def check_guardrail_available(mode: str, guardrail_dir: Path) -> None:
    """Raise a one-line :class:`CosmosError` when ``mode`` cannot run; never imports torch or loads a model.

    Checks, in order: the mode name, the Python packages of the ``guardrail`` extra, then every file the
    mode reads (word lists and nltk data for ``blocklist``; also the Aegis, SigLIP, classifier and
    RetinaFace files for ``full``).
    """
    if mode not in GUARDRAIL_MODES:
        raise BadInput(f"unknown guardrail mode {mode!r}", f"use one of: {', '.join(GUARDRAIL_MODES)}")
    if mode == "off":
        return
    missing = [name for name in _PACKAGES[mode] if importlib.util.find_spec(name) is None]
    if missing:
        raise CosmosError(f"the guardrail needs {', '.join(missing)} (not installed)", _EXTRA_HINT)
    layout = GuardrailLayout(Path(guardrail_dir))
    absent = None if layout.root.is_dir() else layout.root
    absent = absent or layout.blocklist_missing()
    if absent is None and mode == "full":
        absent = layout.models_missing()
    if absent is not None:
        raise ModelNotDownloaded(
            f"guardrail files not found: {absent} is missing",
            f"run: cosmos-cli download 5b-video2world --checkpoint-dir {layout.root.parent}",
        )
