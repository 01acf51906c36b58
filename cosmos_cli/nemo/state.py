"""A NeMo checkpoint as our model's state dict: strict, inverse-mapped, whole or lazy per tensor.

Strict: every ``module.`` tensor of the checkpoint must be used and none of ours may be missing;
TransformerEngine ``_extra_state`` entries and ``optimizer.*`` states are skipped. Tensors keep the dtype
the metadata states (the model builder casts afterwards, as for ``model.pt``). ``lazy=True`` gives
:class:`LazyTensor` values, so a tensor-parallel rank's ``narrow`` reads only its slice from disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from cosmos_cli.errors import BadInput, CheckpointMismatch
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.nemo.config import infer_args, read_model_yaml
from cosmos_cli.nemo.dist_reader import DistCheckpoint, Region
from cosmos_cli.nemo.layout import NemoFolder, find_nemo
from cosmos_cli.nemo.mapping import LAYERS, MODULE, Source, select, sources

SHOW = 5
SKIPPED_PREFIXES = ("optimizer.",)


class LazyTensor:
    """A tensor of our state dict that is read when used: ``narrow`` reads the slice, ``to`` all of it."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, fetch: Callable[[Region], torch.Tensor]):
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self._fetch = fetch

    def narrow(self, dim: int, start: int, length: int) -> torch.Tensor:
        region = [(0, n) for n in self.shape]
        region[dim] = (start, start + length)
        return self._fetch(tuple(region))

    def materialize(self) -> torch.Tensor:
        return self._fetch(tuple((0, n) for n in self.shape))

    def to(self, *args, **kwargs) -> torch.Tensor:
        return self.materialize().to(*args, **kwargs)


class NemoCheckpoint:
    """One NeMo checkpoint folder: its architecture (:attr:`args`) and its tensors under our names."""

    def __init__(self, path: Path):
        folder = find_nemo(Path(path))
        if folder is None:
            raise BadInput(
                f"{path} is not a NeMo checkpoint (no weights/.metadata)",
                "point at .../checkpoints/epoch=E-step=S, its weights/ folder or the repo's nemo/ folder",
            )
        self.folder: NemoFolder = folder
        self.dist = DistCheckpoint(folder.weights)
        self.index, self.skipped = _index(self.dist.tensors)
        shapes = {key: self._layer_shape(entry) for key, entry in self.index.items()}
        self.args, self.notes = infer_args(read_model_yaml(folder.model_yaml), shapes, folder.root)
        self._last: tuple | None = None
        self.dtype = _common_dtype([self.dist.tensors[k].dtype for k, _ in self.index.values()])

    @property
    def stacked(self) -> bool:
        """True when the layer tensors are stacked (``decoder.layers.<name>``, layer = dim 0)."""
        return any(layer is not None for _, layer in self.index.values())

    def _layer_shape(self, entry: tuple[str, int | None]) -> tuple[int, ...]:
        key, layer = entry
        shape = self.dist.tensors[key].shape
        return shape[1:] if layer is not None else shape

    def state_dict(self, args: ModelArgs | None = None, *, lazy: bool = False) -> dict:
        """Our keys (without ``model.``) -> tensors (or :class:`LazyTensor` with ``lazy``), strictly checked."""
        args = args or self.args
        mapping = sources(args)
        missing = sorted({f"{s.nemo} (layer {s.layer})" if s.layer is not None else s.nemo
                          for s in mapping.values() if (s.nemo, s.layer) not in self.index})  # fmt: skip
        used = {(s.nemo, s.layer) for s in mapping.values()}
        unexpected = sorted({self.index[k][0] for k in self.index if k not in used})
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected)):
            if items:
                more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
                problems.append(f"{label}: {', '.join(items[:SHOW])}{more}")
        if problems:
            raise CheckpointMismatch(f"{self.folder.weights} does not match {args.name}: " + "; ".join(problems),
                                     "check that the NeMo checkpoint is a Cosmos AR model")  # fmt: skip
        self._check_rows(mapping)
        out = {}
        for ours, source in mapping.items():
            shape = self._our_shape(source)
            key, _ = self.index[(source.nemo, source.layer)]
            lazy_tensor = LazyTensor(shape, self.dist.tensors[key].dtype, self._fetcher(source))
            out[ours] = lazy_tensor if lazy else lazy_tensor.materialize()
        return out

    def _our_shape(self, source: Source) -> tuple[int, ...]:
        shape = self._layer_shape(self.index[(source.nemo, source.layer)])
        if source.kind == "id":
            return shape
        rows = source.rows * (source.groups if source.kind == "grouped" else 1)
        return (rows, *shape[1:])

    def _check_rows(self, mapping: dict[str, Source]) -> None:
        """Each split NeMo tensor must have exactly the rows its parts add up to (QKV, KV, fc1)."""
        need: dict[tuple[str, int | None], int] = {}
        for s in mapping.values():
            if s.kind != "id":
                rows = s.rows * (s.groups if s.kind == "grouped" else 1)
                need[(s.nemo, s.layer)] = need.get((s.nemo, s.layer), 0) + rows
        for entry, rows in need.items():
            have = self._layer_shape(self.index[entry])[0]
            if have != rows:
                raise CheckpointMismatch(
                    f"{entry[0]} has {have} rows but the architecture needs {rows}",
                    "check the checkpoint's context/model.yaml against its weights",
                )

    def _fetcher(self, source: Source) -> Callable[[Region], torch.Tensor]:
        key, layer = self.index[(source.nemo, source.layer)]

        def read(region: Region) -> torch.Tensor:
            # wq, wk and wv (and a TP rank's slices of them) come from the same block of linear_qkv,
            # requested one after the other: keep the last block instead of reading it three times.
            cache_key = (key, layer, region)
            if self._last is not None and self._last[0] == cache_key:
                return self._last[1]
            if layer is None:
                tensor = self.dist.read(key, region)
            else:
                tensor = self.dist.read(key, ((layer, layer + 1), *region))[0]
            self._last = (cache_key, tensor) if source.kind == "grouped" else None
            return tensor

        return lambda region: select(source, read, region)


def _index(tensors: dict) -> tuple[dict[tuple[str, int | None], tuple[str, int | None]], list[str]]:
    """(NeMo name without ``module.``/layer, layer) -> (checkpoint key, index in its dim 0 or None)."""
    index: dict[tuple[str, int | None], tuple[str, int | None]] = {}
    skipped = []
    unknown = []
    for key, info in tensors.items():
        if "_extra_state" in key or key.startswith(SKIPPED_PREFIXES):
            skipped.append(key)
            continue
        if not key.startswith(MODULE):
            unknown.append(key)
            continue
        name = key[len(MODULE) :]
        entries: list[tuple[tuple[str, int | None], tuple[str, int | None]]] = []
        if name.startswith(LAYERS):
            rest = name[len(LAYERS) :]
            head, _, tail = rest.partition(".")
            if head.isdigit():
                entries.append(((tail, int(head)), (key, None)))
            else:
                entries += [((rest, i), (key, i)) for i in range(info.shape[0])]
        else:
            entries.append(((name, None), (key, None)))
        for entry, where in entries:
            if entry in index:
                raise CheckpointMismatch(f"{key} and {index[entry][0]} hold the same tensor",
                                         "the NeMo checkpoint mixes stacked and per-layer keys")  # fmt: skip
            index[entry] = where
    if unknown:
        raise CheckpointMismatch(
            f"unexpected entries in the NeMo checkpoint: {', '.join(sorted(unknown)[:SHOW])}",
            "only module.* model tensors (and optimizer states, skipped) are expected",
        )
    return index, skipped


def _common_dtype(dtypes: list[torch.dtype]) -> torch.dtype:
    return max(set(dtypes), key=dtypes.count) if dtypes else torch.float32


def is_nemo_checkpoint(path: Path) -> bool:
    """True when ``path`` is a NeMo checkpoint folder (raises for a format we refuse, e.g. zarr)."""
    return find_nemo(Path(path)) is not None
