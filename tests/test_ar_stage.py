"""The AR stage under offloading: moving its weights keeps the generator (no recompilation) and the tokens."""

from __future__ import annotations

import torch

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.stages.ar_model import ARModelStage
from tests.conftest import TINY_AR_DIR

CPU = torch.device("cpu")


def test_moving_the_weights_keeps_generator_and_tokens(tiny_checkpoints):
    stage = ARModelStage(CheckpointLayout(tiny_checkpoints, TINY_AR_DIR), dtype=torch.float32)
    stage.load(CPU)
    args = stage.args
    prompt = torch.randint(0, args.video_vocab_size, (1, 1 + args.tokens_per_frame * 2))
    prompt[:, 0] = args.bov_token
    context = torch.randn(1, args.context_len, args.context_dim)
    params, seeds = SamplingParams(1.0, 0.9), torch.tensor([11])
    first = stage.generate(prompt, context, 24, params, seeds)
    generator = stage.generator
    stage.to(CPU)  # what parking and fetching do between batches
    assert stage.generator is generator
    assert stage.model.layers[0].attention.kv_cache is None  # caches are freed with the move
    assert torch.equal(stage.generate(prompt, context, 24, params, seeds), first)
    stage.unload()
    assert not stage.loaded and stage.generator is None
