"""What to generate: single inputs or JSONL batches, with output names that never collide.

A JSONL line is ``{"prompt": ..., "visual_input": ...}`` (NVIDIA's format; relative paths resolve against
the file's folder); ``seed``, ``top_p``, ``temperature`` and ``num_input_frames`` may override the
command's values per line. Each sample writes ``<output_dir>/<name>/<name>.mp4`` plus
``<name>/generation.json``; a re-run skips samples whose JSON says they succeeded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
    index: int = 0
    extra: dict = field(default_factory=dict)

    def folder(self, output_dir: Path) -> Path:
        return output_dir / self.name

    def video_path(self, output_dir: Path) -> Path:
        return self.folder(output_dir) / f"{self.name}.mp4"

    def result_path(self, output_dir: Path) -> Path:
        return self.folder(output_dir) / RESULT_FILE

    def is_done(self, output_dir: Path) -> bool:
        result = self.result_path(output_dir)
        if not (result.exists() and self.video_path(output_dir).exists()):
            return False
        try:
            return json.loads(result.read_text()).get("status") == "succeeded"
        except (OSError, json.JSONDecodeError):
            return False


def safe_name(text: str) -> str:
    """A file-system-safe sample name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "sample"
