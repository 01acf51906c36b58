"""The T5 text encoder stage: ``google-t5/t5-11b``'s encoder, as NVIDIA's ``CosmosT5TextEncoder`` uses it.

The reference loads ``T5EncoderModel`` without a dtype, i.e. in **fp32** (~19.5 GB for T5-11B's encoder);
``dtype=torch.bfloat16`` halves that. The repository's weight file holds the whole encoder-decoder
(~45 GB in fp32); ``from_pretrained`` memory-maps it and reads only the encoder's tensors (the
``decoder.*`` keys are ignored by ``T5EncoderModel``), straight onto the target device.

``encode`` follows ``CosmosT5TextEncoder.encode_prompts``: pad/truncate to ``max_length`` tokens, run the
encoder, zero every position past each prompt's true length. The mask it returns is all ones, because the
reference pipeline overwrites the tokenizer's mask with ones before the AR model sees it
(``context_mask = torch.ones_like(...)``): cross-attention reads all positions, zeroed padding included.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cosmos_cli.errors import BadInput, CheckpointMismatch, CosmosError, ModelNotDownloaded
from cosmos_cli.stages.base import Stage

if TYPE_CHECKING:
    from transformers import BatchEncoding

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports; we check the load result ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class TextEncoderStage(Stage):
    """Prompts -> T5 embeddings ``[B, max_length, d_model]`` (padding rows zero) and an all-ones mask."""

    name = "text_encoder"
    loaded_attrs = ("_model", "_tokenizer")

    def __init__(self, model_dir: Path, *, dtype: torch.dtype = torch.float32):
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self._model: torch.nn.Module | None = None
        self._tokenizer = None

    @property
    def d_model(self) -> int:
        self.require_loaded()
        return int(self._model.config.d_model)

    # ---- Stage contract ------------------------------------------------------------------------
    def _load(self, device: torch.device) -> None:
        if importlib.util.find_spec("accelerate") is None:
            # transformers needs it for device_map, which streams the weights straight to the device.
            raise CosmosError("loading T5 needs the accelerate package", "run: pip install accelerate")
        from transformers import T5EncoderModel, T5TokenizerFast

        try:
            with quiet_transformers():
                tokenizer = T5TokenizerFast.from_pretrained(self.model_dir)
                model, info = T5EncoderModel.from_pretrained(
                    self.model_dir, dtype=self.dtype, device_map={"": device}, output_loading_info=True
                )
        except (OSError, RuntimeError, ValueError) as err:
            raise CheckpointMismatch(
                f"cannot load the T5 encoder from {self.model_dir}: {str(err).strip().splitlines()[0]}",
                "delete the folder and download google-t5/t5-11b again",
            ) from err
        if info["missing_keys"]:
            missing = ", ".join(sorted(info["missing_keys"])[:3])
            raise CheckpointMismatch(
                f"T5 checkpoint in {self.model_dir} lacks encoder weights ({missing}, ...)",
                "delete the folder and download google-t5/t5-11b again",
            )
        model.eval().requires_grad_(False)
        self._tokenizer, self._model = tokenizer, model

    def require_files(self) -> None:
        hint = "run: cosmos-cli download to fetch google-t5/t5-11b"
        if not (self.model_dir / "config.json").is_file():
            raise ModelNotDownloaded(f"T5 text encoder not found: {self.model_dir / 'config.json'} is missing", hint)
        if not any((self.model_dir / name).is_file() for name in WEIGHT_FILES):
            raise ModelNotDownloaded(f"T5 weights missing in {self.model_dir} (expected pytorch_model.bin)", hint)
        if not any((self.model_dir / name).is_file() for name in TOKENIZER_FILES):
            raise ModelNotDownloaded(f"T5 tokenizer missing in {self.model_dir} (expected tokenizer.json)", hint)

    # ---- encode --------------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str], max_length: int = 512) -> BatchEncoding:
        """T5 token ids and attention mask ``[B, max_length]``: right-padded with ``<pad>`` (0), truncated
        so that the last kept token is ``</s>`` (1)."""
        self.require_loaded("tokenize")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise BadInput("no prompt given", "pass at least one text prompt")
        return self._tokenizer(
            list(prompts),
            return_tensors="pt",
            truncation=True,
            padding="max_length",
            max_length=max_length,
            return_length=True,
            return_offsets_mapping=False,
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 embeddings ``[B, max_length, d_model]`` (zero past each prompt) and a bool all-ones mask.

        Prompts longer than ``max_length`` tokens are truncated; the last kept token is ``</s>``.
        """
        batch = self.tokenize(prompts, max_length)
        input_ids = batch.input_ids.to(self.device)
        attention_mask = batch.attention_mask.to(self.device)
        hidden = self._model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        lengths = attention_mask.sum(dim=1)
        padding = torch.arange(hidden.shape[1], device=hidden.device)[None, :] >= lengths[:, None]
        hidden = hidden.float().masked_fill(padding[:, :, None], 0.0)
        return hidden, torch.ones_like(attention_mask, dtype=torch.bool)
