"""What to generate: single inputs or JSONL batches, with output names that never collide.

A JSONL line is ``{"prompt": ..., "visual_input": ...}`` (NVIDIA's format; relative paths resolve against
the file's folder); ``seed``, ``top_p``, ``temperature``, ``num_input_frames`` and ``num_frames`` may
override the command's values per line. Each sample writes ``<output_dir>/<name>/<name>.mp4`` plus
``<name>/generation.json``; a re-run skips a sample whose JSON says it succeeded for the same request
(``pipeline/fingerprint.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

RESULT_FILE = "generation.json"


@dataclass
class Sample:
    name: str
    prompt: str
    visual_input: Path
    seed: int
    top_p: float | None = None
    temperature: float | None = None
    num_input_frames: int = 9
    num_frames: int = 33
    """Frames of the output video: 33 + 24k (:mod:`cosmos_cli.pipeline.long_video`)."""

    def folder(self, output_dir: Path) -> Path:
        return output_dir / self.name

    def video_path(self, output_dir: Path) -> Path:
        return self.folder(output_dir) / f"{self.name}.mp4"

    def result_path(self, output_dir: Path) -> Path:
        return self.folder(output_dir) / RESULT_FILE

    def finished_record(self, output_dir: Path) -> dict | None:
        """The ``generation.json`` of a finished sample (status succeeded, video present), else None."""
        result = self.result_path(output_dir)
        if not (result.exists() and self.video_path(output_dir).exists()):
            return None
        try:
            record = json.loads(result.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) and record.get("status") == "succeeded" else None

    def is_done(self, output_dir: Path) -> bool:
        return self.finished_record(output_dir) is not None


def safe_name(text: str) -> str:
    """A file-system-safe name (ASCII letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "sample"


def sample_name(stem: str) -> str:
    """A sample's folder name: :func:`safe_name`, plus a short hash of the original where it had non-ASCII
    characters, which :func:`safe_name` drops (``日本`` and ``中文`` would both be ``sample``). ASCII names
    keep the name they always had."""
    name = safe_name(stem)
    if stem.isascii():
        return name
    canonical = unicodedata.normalize("NFC", stem).encode("utf-8", "surrogatepass")  # macOS stores NFD
    return f"{name}-{hashlib.sha256(canonical).hexdigest()[:8]}"
