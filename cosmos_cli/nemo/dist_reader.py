"""Read regions of tensors from a torch_dist (``torch.distributed.checkpoint``) folder without loading them whole.

``FileSystemReader.read_metadata()`` gives every tensor's global shape, dtype and chunks, and where each
chunk's bytes are (file, offset, length). A chunk is a ``torch.save`` archive (an uncompressed zip) inside
a ``.distcp`` file; we read its small ``data.pkl`` with a restricted unpickler to learn the storage layout
and then ``pread`` only the bytes a region needs. A tensor-parallel rank asking for its rows of one layer
therefore reads those rows, as it would from an mmap'd ``model.pt``. ``torch.distributed.checkpoint.load``
would ``torch.load`` every chunk whole (for a stacked layer tensor: all layers at once).
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import struct
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from cosmos_cli.errors import CheckpointMismatch

Region = tuple[tuple[int, int], ...]
"""One ``(start, stop)`` per dimension."""


@dataclass(frozen=True)
class TensorInfo:
    """A global tensor of the checkpoint: shape and dtype as the metadata states them."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class _Chunk:
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    path: Path
    item_offset: int
    item_length: int


@dataclass(frozen=True)
class _Layout:
    """Where a chunk's elements are: absolute byte offset of its storage, dtype, strides, element offset."""

    data_offset: int
    dtype: torch.dtype
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_offset: int


class _Window(io.RawIOBase):
    """A seekable read-only view of ``length`` bytes at ``offset`` of an open file (one archive)."""

    def __init__(self, fd: int, offset: int, length: int):
        self.fd, self.offset, self.length, self.pos = fd, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.length + pos}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.length - self.pos))
        data = os.pread(self.fd, n, self.offset + self.pos)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


class _Rebuild:
    """What ``torch._utils._rebuild_tensor_v2`` would have been called with."""

    def __init__(self, storage, storage_offset, size, stride, *_):
        self.storage, self.storage_offset = storage, storage_offset
        self.size, self.stride = tuple(size), tuple(stride)


class _TensorPickle(pickle.Unpickler):
    """Unpickles a saved tensor's ``data.pkl`` into a :class:`_Rebuild`; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _Rebuild
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" and name in _storage_dtypes():
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a checkpoint tensor")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        dtype = pid[5] if len(pid) > 5 and isinstance(pid[5], torch.dtype) else _storage_dtypes().get(storage_type)
        if dtype is None:
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        return (str(key), dtype)


@functools.cache
def _storage_dtypes() -> dict[str, torch.dtype]:
    """``torch.FloatStorage`` and friends (the names ``torch.save`` pickles) -> dtype."""
    with warnings.catch_warnings():  # "TypedStorage is deprecated"
        warnings.simplefilter("ignore")
        legacy = torch.storage._LegacyStorage
        out = {}
        for name in dir(torch):
            cls = getattr(torch, name)
            if name.endswith("Storage") and isinstance(cls, type) and issubclass(cls, legacy):
                out[name] = cls.dtype
        return out


class DistCheckpoint:
    """The tensors of one torch_dist folder, readable by region. Byte items (``_extra_state``) are never read."""

    def __init__(self, folder: Path):
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.folder = Path(folder)
        try:
            metadata = FileSystemReader(str(self.folder)).read_metadata()
        except Exception as err:  # noqa: BLE001 - a missing or corrupt .metadata: one line
            raise CheckpointMismatch(
                f"cannot read {self.folder / '.metadata'}: {str(err).splitlines()[0][:200] if str(err) else err!r}",
                "the NeMo checkpoint is incomplete; copy or download it again",
            ) from err
        self.tensors: dict[str, TensorInfo] = {}
        self.byte_items: list[str] = []
        self._chunks: dict[str, list[_Chunk]] = {}
        for key, entry in metadata.state_dict_metadata.items():
            if isinstance(entry, TensorStorageMetadata):
                self.tensors[key] = TensorInfo(tuple(entry.size), entry.properties.dtype)
            else:
                self.byte_items.append(key)
        for index, info in (metadata.storage_data or {}).items():
            if index.fqn not in self.tensors:
                continue
            if getattr(info, "transform_descriptors", None):
                raise CheckpointMismatch(
                    f"{index.fqn} is stored with transforms {info.transform_descriptors}",
                    "only plain torch_dist checkpoints are supported",
                )
            chunk_sizes = _chunk_sizes(metadata.state_dict_metadata[index.fqn], tuple(index.offset))
            chunk = _Chunk(tuple(index.offset), chunk_sizes, self.folder / info.relative_path, info.offset, info.length)
            self._chunks.setdefault(index.fqn, []).append(chunk)
        self._layouts: dict[_Chunk, _Layout] = {}
        self._fds: dict[Path, int] = {}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        self.close()

    def read(self, key: str, region: Region | None = None) -> torch.Tensor:
        """Elements ``region`` of tensor ``key`` (all of it if None), in the stored dtype, as a new tensor."""
        info = self.tensors[key]
        region = region or tuple((0, n) for n in info.shape)
        out = torch.empty([stop - start for start, stop in region], dtype=info.dtype)
        covered = 0
        for chunk in self._chunks.get(key, []):
            local = []
            for (start, stop), offset, size in zip(region, chunk.offsets, chunk.sizes, strict=True):
                lo, hi = max(start, offset), min(stop, offset + size)
                if lo >= hi:
                    break
                local.append((lo, hi))
            else:
                inside = tuple((lo - o, hi - o) for (lo, hi), o in zip(local, chunk.offsets, strict=True))
                part = self._read_chunk(key, chunk, inside)
                target = out
                for dim, ((lo, hi), (start, _)) in enumerate(zip(local, region, strict=True)):
                    target = target.narrow(dim, lo - start, hi - lo)
                target.copy_(part)
                covered += part.numel()
        if covered != out.numel():
            raise CheckpointMismatch(
                f"{key}: the checkpoint's chunks cover {covered} of {out.numel()} requested elements",
                "the NeMo checkpoint is incomplete; copy or download it again",
            )
        return out

    def _read_chunk(self, key: str, chunk: _Chunk, region: Region) -> torch.Tensor:
        layout = self._layout(key, chunk)
        if layout.size != chunk.sizes:
            raise CheckpointMismatch(f"{key}: stored chunk {layout.size} != metadata {chunk.sizes}",
                                     "the NeMo checkpoint is corrupt")  # fmt: skip
        dims = [(start, stop, stride) for (start, stop), stride in zip(region, layout.stride, strict=True)]
        return self._gather(chunk.path, layout, layout.storage_offset, dims)

    def _gather(self, path: Path, layout: _Layout, base: int, dims: list[tuple[int, int, int]]) -> torch.Tensor:
        """``pread`` the byte span of ``dims`` (start, stop, stride) from element ``base``; a span much
        larger than the elements it holds (a column slice) is read one index of the outer dim at a time."""
        itemsize = torch.empty((), dtype=layout.dtype).element_size()
        first = base + sum(start * stride for start, _, stride in dims)
        count = sum((stop - 1 - start) * stride for start, stop, stride in dims) + 1
        needed = math.prod(stop - start for start, stop, _ in dims)
        if len(dims) > 1 and count > 2 * needed:
            start, stop, stride = dims[0]
            return torch.stack([self._gather(path, layout, base + i * stride, dims[1:]) for i in range(start, stop)])
        data = os.pread(self._fd(path), count * itemsize, layout.data_offset + first * itemsize)
        if len(data) != count * itemsize:
            raise CheckpointMismatch(f"{path} is truncated", "copy or download the NeMo checkpoint again")
        flat = torch.frombuffer(bytearray(data), dtype=layout.dtype)
        return flat.as_strided([stop - start for start, stop, _ in dims], [stride for _, _, stride in dims])

    def _fd(self, path: Path) -> int:
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        return self._fds[path]

    def _layout(self, key: str, chunk: _Chunk) -> _Layout:
        if chunk in self._layouts:
            return self._layouts[chunk]
        window = _Window(self._fd(chunk.path), chunk.item_offset, chunk.item_length)
        try:
            with zipfile.ZipFile(window) as archive:
                names = archive.namelist()
                pkl = next(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
                rebuilt = _TensorPickle(io.BytesIO(archive.read(pkl))).load()
                if not isinstance(rebuilt, _Rebuild):
                    raise pickle.UnpicklingError("the item is not a tensor")
                storage_key, dtype = rebuilt.storage
                record = archive.getinfo(pkl[: -len("data.pkl")] + "data/" + storage_key)
                if record.compress_type != zipfile.ZIP_STORED:
                    raise pickle.UnpicklingError("compressed tensor data")
                window.seek(record.header_offset)
                header = window.read(30)
                name_len, extra_len = struct.unpack("<HH", header[26:30])
        except (zipfile.BadZipFile, pickle.UnpicklingError, StopIteration, KeyError, struct.error, ValueError) as err:
            raise CheckpointMismatch(
                f"cannot read {key} from {chunk.path}: {err or type(err).__name__}",
                "the NeMo checkpoint is corrupt or in an unsupported format",
            ) from err
        if dtype != self.tensors[key].dtype:
            raise CheckpointMismatch(f"{key}: stored {dtype} but the metadata says {self.tensors[key].dtype}",
                                     "the NeMo checkpoint is corrupt")  # fmt: skip
        start = chunk.item_offset + record.header_offset + 30 + name_len + extra_len
        layout = _Layout(start, dtype, rebuilt.size, rebuilt.stride, rebuilt.storage_offset)
        self._layouts[chunk] = layout
        return layout


def _chunk_sizes(entry, offsets: tuple[int, ...]) -> tuple[int, ...]:
    for chunk in entry.chunks:
        if tuple(chunk.offsets) == offsets:
            return tuple(chunk.sizes)
    raise CheckpointMismatch(f"no chunk at {offsets} in the metadata", "the NeMo checkpoint is corrupt")
