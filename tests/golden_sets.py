"""Every AR golden set in ``shared/golden``, as pytest parameters, for each test that runs over them.

Tests never pick "the first" set: a new set (another family or shape) must pass every such test, and
one that fails must fail the suite. Without ``shared/`` the parameter is one clear skip; with it, an
empty golden folder fails (a missing set is not a pass).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch

from cosmos_cli.models.ar.transformer import Transformer
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import ModelArgs
from tests.conftest import SHARED

GOLDEN_ROOT = SHARED / "golden"


def golden_folders() -> list[Path]:
    """The set folders (those with a ``config.json``); fails the caller when ``shared/`` holds none."""
    folders = sorted(p.parent for p in GOLDEN_ROOT.glob("*/config.json"))
    if GOLDEN_ROOT.exists() and not folders:
        pytest.fail(f"{GOLDEN_ROOT} holds no golden set (no */config.json)")
    return folders


def golden_params() -> list:
    """``pytest.param(folder, id=name)`` per set, for ``@pytest.mark.parametrize("folder", ...)``."""
    if not GOLDEN_ROOT.exists():
        reason = f"{GOLDEN_ROOT} is absent: the shared/ folder next to the repo holds the golden sets"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-shared")]
    folders = sorted(p.parent for p in GOLDEN_ROOT.glob("*/config.json"))
    if not folders:  # collected as one case that fails, never as nothing
        return [pytest.param(GOLDEN_ROOT / "<none>", id="no-golden-set")]
    return [pytest.param(folder, id=folder.name) for folder in folders]


@dataclass(frozen=True)
class Golden:
    folder: Path
    config: dict
    args: ModelArgs
    model: Transformer
    case: dict

    def inputs(self, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt (B, P) and text context (B, L, C), or None for the base family; repeated to ``batch``."""
        prompt, context = self.case["prompt_tokens"], self.case.get("context")
        context = None if context is None else context.float()
        if batch:
            prompt = prompt.repeat(batch, 1)
            context = None if context is None else context.repeat(batch, 1, 1)
        return prompt, context


@cache
def load_golden(folder: Path) -> Golden:
    """The set's float32 CPU model and case, loaded once per test session."""
    if not (folder / "config.json").exists():
        pytest.fail(f"{folder.parent} holds no golden set (no */config.json)")
    config = json.loads((folder / "config.json").read_text())
    args = ModelArgs.from_json(config)
    model = build_model(args, weights=folder / "model.pt", dtype=torch.float32, device=torch.device("cpu"))
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=False)
    return Golden(folder, config, args, model, case)
