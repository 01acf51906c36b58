"""Where each guardrail file lives inside NVIDIA's ``Cosmos-1.0-Guardrail/`` folder.

NVIDIA's pipeline hands sub-folders of this folder to ``from_pretrained(..., cache_dir=...)``, so the Hugging
Face models inside it sit in the Hub cache layout (``models--<org>--<name>/snapshots/<revision>/``). We read
the same layout, offline, so a folder fetched for NVIDIA's scripts works here unchanged and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LLAMAGUARD_REPO = "meta-llama/LlamaGuard-7b"
AEGIS_ADAPTER_REPO = "nvidia/Aegis-AI-Content-Safety-LlamaGuard-Defensive-1.0"
SIGLIP_REPO = "google/siglip-so400m-patch14-384"

WORD_LIST_DIRS = ("custom", "whitelist", "exact_match")


def hub_cache_folder(cache_dir: Path, repo_id: str) -> Path:
    """The folder the Hub cache uses for ``repo_id`` (``models--org--name``)."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def resolve_snapshot(cache_dir: Path, repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` under a Hub ``cache_dir``, or None when it is not there.

    ``refs/main`` names the revision when present (what ``from_pretrained`` writes); a copy without refs
    still works when it holds exactly one snapshot.
    """
    folder = hub_cache_folder(cache_dir, repo_id)
    ref = folder / "refs" / "main"
    if ref.is_file():
        snapshot = folder / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    snapshots = sorted(p for p in (folder / "snapshots").glob("*") if p.is_dir())
    return snapshots[0] if len(snapshots) == 1 else None


@dataclass(frozen=True)
class GuardrailLayout:
    """Paths of every file the guardrail stages read, under one ``Cosmos-1.0-Guardrail/`` folder."""

    root: Path

    @property
    def blocklist_dir(self) -> Path:
        return self.root / "blocklist"

    @property
    def nltk_data(self) -> Path:
        return self.blocklist_dir / "nltk_data"

    @property
    def aegis_cache(self) -> Path:
        return self.root / "aegis"

    @property
    def video_filter_dir(self) -> Path:
        return self.root / "video_content_safety_filter"

    @property
    def safety_filter(self) -> Path:
        return self.video_filter_dir / "safety_filter.pt"

    @property
    def retinaface(self) -> Path:
        return self.root / "face_blur_filter" / "Resnet50_Final.pth"

    def llamaguard_snapshot(self) -> Path | None:
        return resolve_snapshot(self.aegis_cache, LLAMAGUARD_REPO)

    def aegis_adapter_snapshot(self) -> Path | None:
        return resolve_snapshot(self.aegis_cache, AEGIS_ADAPTER_REPO)

    def siglip_snapshot(self) -> Path | None:
        return resolve_snapshot(self.video_filter_dir, SIGLIP_REPO)

    def blocklist_missing(self) -> Path | None:
        """The first file or folder the blocklist needs that is absent, else None."""
        for name in WORD_LIST_DIRS:
            if not (self.blocklist_dir / name).is_dir():
                return self.blocklist_dir / name
        # nltk reads either an unpacked folder or the zip that nltk.download leaves next to it.
        for resource in ("corpora/wordnet", "tokenizers/punkt_tab"):
            path = self.nltk_data / resource
            if not path.is_dir() and not path.with_suffix(".zip").is_file():
                return path
        return None

    def models_missing(self) -> Path | None:
        """The first model file of the full guardrail that is absent, else None."""
        snapshots = [
            (self.llamaguard_snapshot(), hub_cache_folder(self.aegis_cache, LLAMAGUARD_REPO), "config.json"),
            (
                self.aegis_adapter_snapshot(),
                hub_cache_folder(self.aegis_cache, AEGIS_ADAPTER_REPO),
                "adapter_config.json",
            ),
            (self.siglip_snapshot(), hub_cache_folder(self.video_filter_dir, SIGLIP_REPO), "config.json"),
        ]
        for snapshot, folder, marker in snapshots:
            if snapshot is None:
                return folder
            if not (snapshot / marker).is_file():
                return snapshot / marker
        for path in (self.safety_filter, self.retinaface):
            if not path.is_file():
                return path
        return None
