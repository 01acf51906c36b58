"""The video content safety filter: SigLIP so400m image embeddings -> NVIDIA's 7-class MLP, on every frame.

Same encoder, preprocessing (SigLIP's PIL image processor), L2 normalisation, MLP and rule as NVIDIA's
``VideoContentSafetyFilter.is_safe_frames``: any frame whose arg-max class is not 0 makes the video unsafe.
Two changes that do not alter verdicts: only SigLIP's vision tower is loaded (the text tower is unused:
~1.7 GB less in fp32), and frames go through in small batches instead of one by one. Errors propagate;
the stage turns them into a block (NVIDIA skips frames it fails on).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cosmos_cli.errors import CheckpointMismatch, ModelNotDownloaded
from cosmos_cli.guardrail.hf import require_all_weights
from cosmos_cli.guardrail.layout import GuardrailLayout
from cosmos_cli.models.state_dict import check_state_dict
from cosmos_cli.stages.text_encoder import quiet_transformers

CLASS_NAMES = (
    "Safe",
    "Sexual_Content",
    "Violence",
    "Drugs",
    "Child_Abuse",
    "Hate_and_Harassment",
    "Self-Harm",
)
BATCH_FRAMES = 8
_REDOWNLOAD = "re-run: cosmos-cli download 5b-video2world"


class SafetyClassifier(nn.Module):
    """NVIDIA's MLP head: embed -> 512 -> 256 -> classes, BatchNorm + ReLU between (eval: running stats)."""

    def __init__(self, input_size: int = 1152, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


class VideoSafetyModel(nn.Module):
    """Wrapper whose only job is the ``network.`` prefix that ``safety_filter.pt`` keys carry."""

    def __init__(self, input_size: int = 1152, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.network = SafetyClassifier(input_size, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.network(embeddings)


def _image_processor_class():
    """SigLIP's PIL-based processor, which NVIDIA's transformers 4.x used (5.x prefers a torchvision one)."""
    try:
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        return SiglipImageProcessorPil
    except ImportError:  # transformers 4.x: the plain class is the PIL one
        from transformers import SiglipImageProcessor

        return SiglipImageProcessor


def load_classifier(path, input_size: int) -> VideoSafetyModel:
    """Read ``safety_filter.pt`` (``{"model": state_dict}``) strictly, for embeddings of ``input_size``."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    first = state.get("network.layers.0.weight")
    if first is None or first.shape[1] != input_size:
        got = None if first is None else tuple(first.shape)
        raise CheckpointMismatch(
            f"{path} does not fit the SigLIP encoder (first layer {got}, embedding width {input_size})",
            _REDOWNLOAD,
        )
    model = VideoSafetyModel(input_size)
    check_state_dict(model, state, str(path), what="does not match the 7-class safety MLP", hint=_REDOWNLOAD)
    model.load_state_dict(state)
    return model


class VideoContentFilter:
    """SigLIP vision tower + image processor + safety MLP."""

    def __init__(self, encoder: nn.Module, processor, classifier: VideoSafetyModel) -> None:
        self.encoder = encoder
        self.processor = processor
        self.classifier = classifier

    @classmethod
    def load(cls, layout: GuardrailLayout, device: torch.device) -> VideoContentFilter:
        from transformers import SiglipVisionModel

        snapshot = layout.siglip_snapshot()
        if snapshot is None:
            raise ModelNotDownloaded(
                f"SigLIP files not found under {layout.video_filter_dir}",
                f"run: cosmos-cli download 5b-video2world --checkpoint-dir {layout.root.parent}",
            )
        with quiet_transformers():
            encoder, info = SiglipVisionModel.from_pretrained(snapshot, dtype=torch.float32, output_loading_info=True)
            require_all_weights(info, snapshot, "SigLIP")
            processor = _image_processor_class().from_pretrained(snapshot)
        classifier = load_classifier(layout.safety_filter, encoder.config.hidden_size)
        encoder.to(device).eval()
        classifier.to(device).eval()
        return cls(encoder, processor, classifier)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def classify(self, frames: np.ndarray) -> np.ndarray:
        """Class index of each frame of a uint8 ``(T, H, W, 3)`` array."""
        classes = [self._classify_batch(frames[s : s + BATCH_FRAMES]) for s in range(0, len(frames), BATCH_FRAMES)]
        return np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64)

    def first_unsafe(self, frames: np.ndarray) -> tuple[int, str] | None:
        """(index, class name) of the first frame not classified Safe; stops after the batch holding it."""
        for start in range(0, len(frames), BATCH_FRAMES):
            classes = self._classify_batch(frames[start : start + BATCH_FRAMES])
            unsafe = np.flatnonzero(classes != 0)
            if unsafe.size:
                index = int(unsafe[0])
                return start + index, CLASS_NAMES[int(classes[index])]
        return None

    @torch.inference_mode()
    def _classify_batch(self, frames: np.ndarray) -> np.ndarray:
        from PIL import Image

        images = [Image.fromarray(frame) for frame in frames]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=torch.float32)
        embeddings = self.encoder(pixel_values=pixels).pooler_output
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
        return self.classifier(embeddings).argmax(dim=-1).cpu().numpy()
