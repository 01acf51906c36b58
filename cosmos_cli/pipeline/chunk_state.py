"""Saved chunks of an unfinished long video, so that an interrupted sample resumes at its last finished chunk.

Layout, inside the sample's own folder (removed when the sample finishes)::

    .long-video/state.json       {"version", "fingerprint", "chunks": [chunk records]}
    .long-video/chunk_000.npz    that chunk's new frames (uint8, as decoded) and its AR token grid

Each chunk file is written atomically before ``state.json`` is replaced (atomically) to list it, so a kill
at any moment leaves either the previous state or the new one, never a half one. A state is used only when
its ``fingerprint`` (the request and everything the frames depend on, see
:meth:`cosmos_cli.pipeline.long_video.LongVideos._fingerprint`) equals the new request's; otherwise, or
when a listed file is missing or unreadable, it is discarded and the sample starts again from its input.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cosmos_cli.console import warn
from cosmos_cli.io.atomic import atomic_path

STATE_DIR = ".long-video"
STATE_FILE = "state.json"
VERSION = 1


@dataclass
class SavedChunks:
    records: list[dict]
    """``generation.json``'s chunk records of the finished chunks, in order."""
    frames: np.ndarray
    """The video so far: uint8 ``(T, H, W, 3)``, the chunks' frames joined."""


class ChunkStore:
    """The ``.long-video`` folder of one sample."""

    def __init__(self, sample_folder: Path):
        self.folder = Path(sample_folder) / STATE_DIR

    def _chunk_file(self, index: int) -> Path:
        return self.folder / f"chunk_{index:03d}.npz"

    def save(self, fingerprint: dict, records: list[dict], frames: np.ndarray, tokens: torch.Tensor | None) -> None:
        """Add the last of ``records`` (its frames are ``frames[start:end]``) to the saved state."""
        record = records[-1]
        start, end = record["frames"]
        arrays = {"frames": np.ascontiguousarray(frames[start:end], dtype=np.uint8)}
        if tokens is not None:
            arrays["tokens"] = tokens.cpu().numpy()
        with atomic_path(self._chunk_file(record["index"]), overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        state = {"version": VERSION, "fingerprint": fingerprint, "chunks": records}
        with atomic_path(self.folder / STATE_FILE, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(state, indent=2))

    def load(self, fingerprint: dict, limit: int) -> SavedChunks | None:
        """The saved chunks (at most ``limit``) if they belong to this request, else None (and they go)."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            if state.get("version") != VERSION or state.get("fingerprint") != fingerprint:
                self.clear()  # another request's chunks (other seed, prompt, input, model...): never reused
                return None
            records = state["chunks"][:limit]
            parts = []
            for i, record in enumerate(records):
                if record["index"] != i:
                    raise ValueError(f"chunk {i} is recorded as {record['index']}")
                with np.load(self._chunk_file(i)) as saved:
                    part = saved["frames"]
                start, end = record["frames"]
                if part.dtype != np.uint8 or part.ndim != 4 or len(part) != end - start:
                    raise ValueError(f"chunk {i} holds {part.shape} {part.dtype} frames, expected {end - start}")
                parts.append(part)
            if not parts:
                return None
            return SavedChunks(records=records, frames=np.concatenate(parts))
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            warn(f"saved chunks in {self.folder} are unusable ({err}); starting the sample again")
            self.clear()
            return None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
