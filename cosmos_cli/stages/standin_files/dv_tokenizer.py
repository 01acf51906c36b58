"""Write a stand-in ``Cosmos-1.0-Tokenizer-DV8x16x16`` folder: TorchScript ``encoder.jit`` and ``decoder.jit``.

The files are real TorchScript archives with the released files' interface (see
:mod:`cosmos_cli.stages.standin_files.dv_network`), so the code that loads NVIDIA's tokenizer loads these
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cosmos_cli.checkpoints import DV_TOKENIZER_DIR
from cosmos_cli.stages.standin_files.atomic_write import save_script
from cosmos_cli.stages.standin_files.dv_network import TinyDVDecoder, TinyDVEncoder

TINY_DV_LEVELS = (8, 8, 5, 5)
"""1600 tokens, the vocabulary of the tiny AR golden sets (``fsq_levels`` in their ``config.json``)."""


def write_tiny_dv_tokenizer(root: Path, levels: Sequence[int] = TINY_DV_LEVELS) -> None:
    """Write ``root/Cosmos-1.0-Tokenizer-DV8x16x16/{encoder,decoder}.jit`` for the given FSQ levels."""
    folder = Path(root) / DV_TOKENIZER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    levels = [int(level) for level in levels]
    save_script(TinyDVEncoder(levels), folder / "encoder.jit")
    save_script(TinyDVDecoder(levels), folder / "decoder.jit")
