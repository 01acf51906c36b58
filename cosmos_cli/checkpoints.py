"""NVIDIA's ``checkpoints/`` layout: which folder and file each pipeline stage reads.

Kept identical to the reference repository so that users can point ``--checkpoint-dir`` at an existing
NVIDIA checkout, and so that ``download`` writes exactly what ``generate`` reads.

T5 has two layouts. ``download`` writes ``google-t5/t5-11b/`` (NVIDIA's download script does too); NVIDIA's
inference code loads ``from_pretrained("google-t5/t5-11b", cache_dir=checkpoints)``, which leaves the
Hugging Face cache layout ``models--google-t5--t5-11b/snapshots/<commit>/`` (files linked to ``blobs/``,
``refs/main`` naming the commit). :func:`resolve_t5_dir` is the one place that picks between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosmos_cli.errors import BadInput, ModelNotDownloaded

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


def hub_cache_dir(root: Path, repo_id: str) -> Path:
    """Where ``from_pretrained(repo_id, cache_dir=root)`` keeps a repository: ``root/models--<org>--<name>``."""
    return Path(root) / ("models--" + repo_id.replace("/", "--"))


def resolve_t5_dir(root: Path) -> Path:
    """The folder holding T5's ``config.json``, weights and tokenizer under the checkpoint ``root``.

    ``google-t5/t5-11b/`` when it has a ``config.json`` (what ``download`` writes); else, when present, the
    snapshot of NVIDIA's Hugging Face cache (:func:`hub_snapshot`); else ``google-t5/t5-11b/``, so that a
    missing T5 is reported at the path ``download`` fills.
    """
    plain = Path(root) / T5_DIR
    cache = hub_cache_dir(root, T5_DIR)
    if (plain / "config.json").exists() or not cache.is_dir():
        return plain
    return hub_snapshot(cache)


def hub_snapshot(cache: Path) -> Path:
    """The snapshot ``from_pretrained`` would read in a Hugging Face cache folder: the commit that
    ``refs/main`` names; without that file, the only snapshot there is. Several snapshots and no ref is
    ambiguous: one line naming them (never a silent pick of possibly stale weights)."""
    snapshots = cache / "snapshots"
    ref = cache / "refs" / "main"
    hint = f"run: cosmos-cli download --checkpoint-dir {cache.parent}"
    if ref.is_file():
        commit = ref.read_text().strip()
        if not (snapshots / commit).is_dir():
            raise ModelNotDownloaded(f"{ref} names snapshot {commit}, but {snapshots / commit} is missing", hint)
        return snapshots / commit
    found = sorted(p.name for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    if len(found) == 1:
        return snapshots / found[0]
    if not found:
        raise ModelNotDownloaded(f"{cache} holds no snapshot ({snapshots} is empty or missing)", hint)
    raise BadInput(
        f"{cache} holds {len(found)} snapshots ({', '.join(found)}) and no refs/main to choose one",
        f"write the commit to use into {ref}, or delete the snapshots you do not want",
    )


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
        """Either T5 layout (:func:`resolve_t5_dir`)."""
        return resolve_t5_dir(self.root)

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
