"""What to generate: single inputs or JSONL batches, with output names that never collide.

A JSONL line is ``{"prompt": ..., "visual_input": ...}`` (NVIDIA's format; relative paths resolve against
the file's folder); ``seed``, ``top_p``, ``temperature``, ``num_input_frames`` and ``num_frames`` may
override the command's values per line. Each sample writes ``<output_dir>/<name>/<name>.mp4`` plus
``<name>/generation.json``; a re-run skips samples whose JSON says they succeeded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_cli.errors import BadInput
from cosmos_cli.pipeline.long_video import check_num_frames

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


def single_sample(
    prompt: str, visual_input: Path, name: str | None, seed: int, num_input_frames: int, num_frames: int = 33
) -> Sample:
    stem = Path(name).stem if name else Path(visual_input).stem
    return Sample(
        safe_name(stem), prompt, Path(visual_input), seed, num_input_frames=num_input_frames, num_frames=num_frames
    )


def read_batch(path: Path, seed: int, num_input_frames: int, num_frames: int = 33) -> list[Sample]:
    """Samples of a JSONL file; names are ``<line:03d>_<input stem>`` so duplicate basenames never collide."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"batch file not found: {path}", "pass a JSONL file with one {prompt, visual_input} per line")
    samples = []
    for number, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadInput(f"{path}:{number + 1} is not valid JSON ({err.msg})", "one JSON object per line") from err
        if not isinstance(row, dict) or "visual_input" not in row:
            raise BadInput(f'{path}:{number + 1} has no "visual_input"', 'each line needs {"prompt", "visual_input"}')
        visual = Path(row["visual_input"])
        if not visual.is_absolute():
            visual = path.parent / visual
        samples.append(
            Sample(
                name=f"{number:03d}_{safe_name(visual.stem)}",
                prompt=str(row.get("prompt", "")),
                visual_input=visual,
                seed=int(row.get("seed", seed)),
                top_p=row.get("top_p"),
                temperature=row.get("temperature"),
                num_input_frames=int(row.get("num_input_frames", num_input_frames)),
                num_frames=check_num_frames(row.get("num_frames", num_frames), f"{path}:{number + 1} num_frames"),
                index=number,
            )
        )
    if not samples:
        raise BadInput(f"batch file {path} holds no samples", "add one JSON object per line")
    return samples
