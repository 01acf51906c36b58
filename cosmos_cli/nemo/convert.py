"""Write either format from the other: NeMo folder -> ``model.pt`` + ``config.json``, and back.

Both write into a temporary sibling folder and rename it into place at the end, so an interrupted
conversion never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from cosmos_cli.checkpoints import ARCH_FILE
from cosmos_cli.errors import BadInput, CheckpointMismatch
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.nemo.config import model_yaml
from cosmos_cli.nemo.layout import BACKEND_FILE, CONTEXT, MODEL_YAML, TORCH_DIST
from cosmos_cli.nemo.mapping import to_nemo
from cosmos_cli.nemo.state import NemoCheckpoint

RELEASED_PREFIX = "model."
CONFIG_FILE = "config.json"


@contextmanager
def staged_folder(output: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary folder next to ``output`` that becomes ``output`` when the block succeeds."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise BadInput(f"{output} already exists", "pass --overwrite to replace it, or choose another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the renamed folder
    try:
        yield tmp
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_released(checkpoint: NemoCheckpoint, output: Path, *, dtype: torch.dtype | None = None,
                   overwrite: bool = False, verify: bool = True) -> Path:  # fmt: skip
    """``output/model.pt`` (``model.``-prefixed keys, as released) + ``config.json`` + ``cosmos_arch.json``.

    ``verify`` reads the written file back and compares every tensor before the folder is renamed.
    """
    state = checkpoint.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    config = checkpoint.args.to_json()
    with staged_folder(output, overwrite=overwrite) as tmp:
        torch.save({RELEASED_PREFIX + k: v.contiguous() for k, v in state.items()}, tmp / "model.pt")
        (tmp / CONFIG_FILE).write_text(json.dumps({**config, "converted_from": str(checkpoint.folder.root)}, indent=2))
        (tmp / ARCH_FILE).write_text(json.dumps(config, indent=2))
        if verify:
            from cosmos_cli.models.ar.weights import read_state_dict

            _same(state, read_state_dict(tmp / "model.pt"), "model.pt")
    return Path(output)


def _same(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], what: str) -> None:
    """Every tensor read back equals what was written (keys, dtype, bits); else nothing is left behind."""
    if expected.keys() != got.keys():
        odd = sorted(expected.keys() ^ got.keys())
        raise CheckpointMismatch(f"the written {what} has other keys than the source: {', '.join(odd[:5])}",
                                 "report this: the conversion is wrong")  # fmt: skip
    for key, tensor in expected.items():
        if got[key].dtype != tensor.dtype or not torch.equal(got[key], tensor):
            raise CheckpointMismatch(f"the written {what} differs from the source at {key}",
                                     "report this: the conversion is wrong")  # fmt: skip


def write_nemo_folder(nemo_state: dict, args: ModelArgs, output: Path, *, overwrite: bool = False,
                      expect: dict[str, torch.Tensor] | None = None) -> Path:  # fmt: skip
    """A NeMo 2 checkpoint folder: ``weights/`` (torch_dist files, ``metadata.json``, ``common.pt``) and
    ``context/model.yaml``, plus our ``cosmos_arch.json`` for what NeMo does not store (vocabulary, grid).

    ``nemo_state`` holds NeMo keys (``module.``-prefixed tensors; byte entries as ``io.BytesIO``).
    ``expect`` (our state dict): read the folder back, inverse-mapped, and compare before the rename.
    """
    from torch.distributed.checkpoint import FileSystemWriter, save

    with staged_folder(output, overwrite=overwrite) as tmp:
        weights = tmp / "weights"
        weights.mkdir()
        with warnings.catch_warnings():  # "torch.distributed is disabled ... assuming a single process"
            warnings.simplefilter("ignore")
            save(nemo_state, storage_writer=FileSystemWriter(str(weights)), no_dist=True)
        (weights / BACKEND_FILE).write_text(json.dumps(TORCH_DIST))
        torch.save({}, weights / "common.pt")
        (tmp / CONTEXT).mkdir()
        (tmp / CONTEXT / MODEL_YAML).write_text(yaml.safe_dump(model_yaml(args), sort_keys=False))
        (tmp / ARCH_FILE).write_text(json.dumps(args.to_json(), indent=2))
        if expect is not None:
            back = NemoCheckpoint(tmp)
            if back.args != args:
                raise CheckpointMismatch("the written NeMo folder describes another architecture",
                                         "report this: the conversion is wrong")  # fmt: skip
            _same(expect, back.state_dict(), "NeMo folder")
            back.dist.close()
    return Path(output)


def write_nemo(state: dict[str, torch.Tensor], args: ModelArgs, output: Path, *, stacked: bool = True,
               dtype: torch.dtype | None = None, overwrite: bool = False, verify: bool = True) -> Path:  # fmt: skip
    """Our state dict (keys without ``model.``) -> a NeMo folder with the forward key mapping."""
    if args.cross_attn_every_k_layers not in (0, 1):
        raise BadInput(f"{args.name} has cross-attention every {args.cross_attn_every_k_layers} layers",
                       "NeMo's Cosmos models have it in every layer or none")  # fmt: skip
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    nemo_state = to_nemo(state, args, stacked=stacked)
    return write_nemo_folder(nemo_state, args, output, overwrite=overwrite, expect=state if verify else None)
