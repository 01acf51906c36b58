"""Write a tiny diffusion decoder and CV8x8x8 tokenizer in the released files' formats and folder names.

``Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8/``: ``model.pt`` (``net.``-prefixed DiT weights plus a
``logvar.*`` head, like the release), ``aux_vars.pt`` (the generic prompt's ``context``/``context_mask``,
read by the base models) and ``cosmos_arch.json`` (the tiny architecture; the real folder has none, so the
7B preset applies there).

``Cosmos-1.0-Tokenizer-CV8x8x8/``: the stand-ins' TorchScript tokenizer and ``mean_std.pt``
(:mod:`cosmos_cli.stages.standin_files.cv_tokenizer`).

Sizes fit the tiny pipeline (33 frames of 64x96 -> DV grid [5, 4, 6], CV latent [16, 5, 8, 12]; the
decoder works on 8-latent-frame windows): the full 15-step guided sampler runs in about a second on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cosmos_cli.checkpoints import ARCH_FILE, DIFFUSION_DECODER_DIR
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_
from cosmos_cli.stages.standin_files.atomic_write import save_tensors, write_via_temporary
from cosmos_cli.stages.standin_files.cv_tokenizer import write_tiny_cv_tokenizer
from cosmos_cli.stages.standin_files.sizes import TINY_CONTEXT_DIM, tiny_dd_config

TINY_CONTEXT_LEN = 512


def write_tiny_diffusion_decoder(
    root: Path, *, token_voc: int, seed: int = 0, context_dim: int = TINY_CONTEXT_DIM
) -> None:
    """Write the tiny diffusion decoder (``model.pt``, ``aux_vars.pt``, ``cosmos_arch.json``) and the tiny
    CV8x8x8 tokenizer under ``root``, replacing older copies.

    ``token_voc`` is the DV vocabulary (1600 for the tiny AR model); ``context_dim`` the T5 width.
    """
    config = tiny_dd_config(token_voc, context_dim)
    folder = Path(root) / DIFFUSION_DECODER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    net = DiffusionDecoderDiT(config)
    init_random_(net, generator)
    state = {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    # The release's training-only uncertainty head: FourierFeatures(128) buffers and Linear(128, 1).
    state["logvar.0.freqs"] = 2 * torch.pi * torch.randn(128, generator=generator)
    state["logvar.0.phases"] = 2 * torch.pi * torch.rand(128, generator=generator)
    state["logvar.1.weight"] = 0.01 * torch.randn(1, 128, generator=generator)
    save_tensors(state, folder / "model.pt")

    words = 12
    context = torch.zeros(1, TINY_CONTEXT_LEN, context_dim)
    context[:, :words] = 0.2 * torch.randn(1, words, context_dim, generator=generator)
    aux = {"context": context, "context_mask": torch.ones(1, TINY_CONTEXT_LEN, dtype=torch.bool)}
    save_tensors(aux, folder / "aux_vars.pt")
    write_via_temporary(folder / ARCH_FILE, lambda tmp: tmp.write_text(json.dumps(config.to_json(), indent=1)))
    write_tiny_cv_tokenizer(root, seed)
