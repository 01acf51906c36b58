"""Write one stand-in file through a temporary name beside it, so a crash never leaves a half-written file.

The temporary name is ``.<name>.tmp`` in the same folder (``os.replace`` is then a rename). Kept as is: a
torch archive records its file's name inside, so another naming would change the written bytes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch


def write_via_temporary(path: Path, save: Callable[[Path], object]) -> None:
    """``save(tmp)``, then rename ``tmp`` onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    save(tmp)
    os.replace(tmp, path)


def save_tensors(obj: object, path: Path) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    write_via_temporary(path, lambda tmp: torch.save(obj, tmp))


def save_script(module: torch.nn.Module, path: Path) -> None:
    """Script ``module`` (in eval mode) and save it to ``path``, atomically: never a truncated ``.jit``."""
    with warnings.catch_warnings():
        # The released tokenizers are TorchScript, so the stand-ins must be too, deprecated or not.
        warnings.filterwarnings("ignore", message=".*torch\\.jit\\.", category=DeprecationWarning)
        scripted = torch.jit.script(module.eval())
        write_via_temporary(path, lambda tmp: torch.jit.save(scripted, str(tmp)))
