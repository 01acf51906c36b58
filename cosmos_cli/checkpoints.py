"""NVIDIA's ``checkpoints/`` layout: which folder and file each pipeline stage reads.

Kept identical to the reference repository so that users can point ``--checkpoint-dir`` at an existing
NVIDIA checkout, and so that ``download`` writes exactly what ``generate`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosmos_cli.errors import ModelNotDownloaded

AR_MODEL_DIRS = {
    "4b": "Cosmos-1.0-Autoregressive-4B",
    "5b-video2world": "Cosmos-1.0-Autoregressive-5B-Video2World",
    "12b": "Cosmos-1.0-Autoregressive-12B",
    "13b-video2world": "Cosmos-1.0-Autoregressive-13B-Video2World",
}
DEFAULT_AR_MODEL_DIR = AR_MODEL_DIRS["5b-video2world"]
DV_TOKENIZER_DIR = "Cosmos-1.0-Tokenizer-DV8x16x16"
CV_TOKENIZER_DIR = "Cosmos-1.0-Tokenizer-CV8x8x8"
DIFFUSION_DECODER_DIR = "Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8"
T5_DIR = "google-t5/t5-11b"
GUARDRAIL_DIR = "Cosmos-1.0-Guardrail"

ARCH_FILE = "cosmos_arch.json"
"""Optional architecture override written next to a non-preset ``model.pt`` (the tiny checkpoints)."""


@dataclass(frozen=True)
class CheckpointLayout:
    """Paths of every file the pipeline may read, under one checkpoint root."""

    root: Path
    ar_model_dir: str = DEFAULT_AR_MODEL_DIR

    @property
    def ar_dir(self) -> Path:
        return self.root / self.ar_model_dir

    @property
    def ar_weights(self) -> Path:
        from cosmos_cli.nemo.layout import find_nemo

        nemo = find_nemo(self.ar_dir)  # a NeMo checkpoint folder: its torch_dist weights/
        if nemo is not None:
            return nemo.weights
        for name in ("model.pt", "model.safetensors"):
            if (self.ar_dir / name).exists():
                return self.ar_dir / name
        return self.ar_dir / "model.pt"

    @property
    def dv_encoder(self) -> Path:
        return self.root / DV_TOKENIZER_DIR / "encoder.jit"

    @property
    def dv_decoder(self) -> Path:
        return self.root / DV_TOKENIZER_DIR / "decoder.jit"

    @property
    def t5_dir(self) -> Path:
        return self.root / T5_DIR

    @property
    def dd_dir(self) -> Path:
        return self.root / DIFFUSION_DECODER_DIR

    @property
    def cv_dir(self) -> Path:
        return self.root / CV_TOKENIZER_DIR

    @property
    def guardrail_dir(self) -> Path:
        return self.root / GUARDRAIL_DIR

    def require(self, *paths: Path, what: str, preset: str = "5b-video2world") -> None:
        """Raise a one-line error naming the first missing file and the command that fetches it."""
        for path in paths:
            if not path.exists():
                raise ModelNotDownloaded(
                    f"{what} not found: {path} is missing",
                    f"run: cosmos-cli download {preset} --checkpoint-dir {self.root}",
                )
