"""One strict state-dict check for every checkpoint we load ourselves (AR, diffusion decoder, guardrail nets).

``load_state_dict(strict=True)`` raises a wall of text naming every key; a user needs the first few offenders,
which file, and what to do. Keys a module may lack (BatchNorm's ``num_batches_tracked``, buffers rebuilt at load)
are passed as ``may_lack``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from cosmos_cli.errors import CheckpointMismatch

SHOW = 3
"""How many offenders of each kind the message names."""


def _summary(keys: list[str], limit: int = SHOW) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    what: str,
    hint: str,
    may_lack: Callable[[str], bool] = lambda key: False,
) -> None:
    """Raise one :class:`CheckpointMismatch` line unless ``state`` has exactly ``module``'s keys and shapes.

    The line reads ``{source} {what}: missing keys ...; unexpected keys ...; wrong shapes ...``.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state and not may_lack(k)]
    unexpected = [k for k in state if k not in expected]
    shapes = {k: tuple(state[k].shape) for k in expected if k in state}
    wrong = [f"{k} {shape} != {expected[k]}" for k, shape in shapes.items() if shape != expected[k]]
    problems = [
        f"{label} {_summary(items)}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if items
    ]
    if problems:
        raise CheckpointMismatch(f"{source} {what}: " + "; ".join(problems), hint)
