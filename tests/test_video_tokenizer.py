"""FSQ helpers, the DV8x16x16 tokenizer stage, and the tiny TorchScript tokenizer it loads."""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_cli.checkpoints import DV_TOKENIZER_DIR
from cosmos_cli.errors import BadInput, ModelNotDownloaded
from cosmos_cli.models import fsq
from cosmos_cli.stages.standin_files.dv_tokenizer import TINY_DV_LEVELS, write_tiny_dv_tokenizer
from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage, _codes_of

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIP = SHARED / "data" / "clips" / "input.mp4"
REAL_LEVELS = [8, 8, 8, 5, 5, 5]


# ---- FSQ ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [REAL_LEVELS, list(TINY_DV_LEVELS), [3], [7, 4, 2]])
def test_fsq_round_trip_every_code(levels):
    indices = torch.arange(fsq.codebook_size(levels))
    codes = fsq.indices_to_codes(indices, levels)
    assert codes.shape == (len(indices), len(levels))
    assert torch.equal(fsq.codes_to_indices(codes, levels), indices)
    # Codes sit on the grid k / (level // 2), from -1 up to ((level - 1) // 2) / (level // 2).
    for ch, level in enumerate(levels):
        half = level // 2
        values = sorted(set((codes[:, ch] * half).round().long().tolist()))
        assert values == list(range(-half, (level - 1) // 2 + 1))
    # With power-of-two half widths (8 -> 4, 5 -> 2, as in the real and tiny levels) bf16 holds every
    # code exactly, which is how the real encoder hands them over.
    if all((level // 2) & (level // 2 - 1) == 0 for level in levels):
        assert torch.equal(fsq.codes_to_indices(codes.bfloat16(), levels), indices)


def test_fsq_index_is_mixed_radix_with_reference_basis():
    # basis = cumprod([1, 8, 8, 8, 5, 5]) = [1, 8, 64, 512, 2560, 12800]
    digits = torch.tensor([3, 0, 7, 1, 4, 2])
    half = torch.tensor(REAL_LEVELS) // 2
    codes = ((digits - half) / half).float()
    expected = 3 + 0 * 8 + 7 * 64 + 1 * 512 + 4 * 2560 + 2 * 12800
    assert fsq.codes_to_indices(codes, REAL_LEVELS).item() == expected
    assert fsq.codebook_size(REAL_LEVELS) == 64000


def test_fsq_quantize_lands_on_grid_and_inverse_bound_inverts_it():
    levels = REAL_LEVELS
    z = torch.randn(4096, len(levels), generator=torch.Generator().manual_seed(0)) * 3
    codes = fsq.quantize(z, levels)
    indices = fsq.codes_to_indices(codes, levels)
    assert int(indices.min()) >= 0 and int(indices.max()) < 64000
    assert torch.equal(fsq.indices_to_codes(indices, levels), codes)
    every_code = fsq.indices_to_codes(torch.arange(64000), levels)
    assert torch.equal(fsq.quantize(fsq.inverse_bound(every_code, levels), levels), every_code)


def test_codes_to_indices_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="channels"):
        fsq.codes_to_indices(torch.zeros(2, 5), REAL_LEVELS)


# ---- tiny TorchScript tokenizer + stage --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    write_tiny_dv_tokenizer(root)
    return root


@pytest.fixture(scope="module")
def stage(tiny_root) -> VideoTokenizerStage:
    folder = tiny_root / DV_TOKENIZER_DIR
    stage = VideoTokenizerStage(folder / "encoder.jit", folder / "decoder.jit", levels=TINY_DV_LEVELS)
    stage.load(torch.device("cpu"))
    return stage


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """33 frames of the real input clip, resized to 64 x 96, as [1, 3, 33, 64, 96] in [-1, 1]."""
    if not CLIP.exists():
        pytest.skip(f"shared clip {CLIP} not found (CI clones shared/ next to the repo)")
    import imageio
    from PIL import Image

    reader = imageio.get_reader(str(CLIP))
    try:
        frames = [np.asarray(Image.fromarray(f).resize((96, 64), Image.BILINEAR)) for f in islice(reader, 33)]
    finally:
        reader.close()
    assert len(frames) == 33
    video = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)[None].float()
    return video / 127.5 - 1.0


def blocky(video: torch.Tensor) -> torch.Tensor:
    """What an ideal 8x16x16 average-and-repeat codec returns: the tiny tokenizer's target."""
    b, c, t, h, w = video.shape
    groups = torch.cat([video[:, :, :1], video[:, :, 1:].reshape(b, c, (t - 1) // 8, 8, h, w).mean(3)], 2)
    pooled = groups.reshape(b, c, -1, h // 16, 16, w // 16, 16).mean(dim=[4, 6])
    frames = torch.cat([pooled[:, :, :1], pooled[:, :, 1:].repeat_interleave(8, 2)], 2)
    return frames.repeat_interleave(16, 3).repeat_interleave(16, 4)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR for signals in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / float(((a - b) ** 2).mean()))


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:DeprecationWarning")
def test_tiny_jit_files_have_the_released_interface(tiny_root):
    folder = tiny_root / DV_TOKENIZER_DIR
    encoder = torch.jit.load(str(folder / "encoder.jit"))
    decoder = torch.jit.load(str(folder / "decoder.jit"))
    assert isinstance(encoder, torch.jit.ScriptModule) and isinstance(decoder, torch.jit.ScriptModule)
    video = torch.rand(2, 3, 17, 32, 48) * 2 - 1
    indices, codes, loss = encoder(video)
    assert indices.shape == (2, 3, 2, 3) and codes.shape == (2, 4, 3, 2, 3) and loss.abs().sum() == 0
    assert torch.equal(indices, fsq.codes_to_indices(codes.permute(0, 2, 3, 4, 1), list(TINY_DV_LEVELS)))
    assert decoder(indices).shape == (2, 3, 17, 32, 48)


def test_encode_decode_real_clip_gives_blocky_clip(stage, clip):
    indices = stage.encode(clip)
    assert indices.shape == (1, 5, 4, 6) and indices.dtype == torch.int64
    assert int(indices.min()) >= 0 and int(indices.max()) < 1600
    video = stage.decode(indices)
    assert video.shape == (1, 3, 33, 64, 96) and video.dtype == torch.float32
    assert float(video.min()) >= -1.0 and float(video.max()) <= 1.0
    # Causal layout: frame 0 alone, then 8 identical frames per latent frame.
    assert torch.equal(video[:, :, 1], video[:, :, 8]) and not torch.equal(video[:, :, 8], video[:, :, 9])
    assert psnr(video, blocky(clip)) > 24.0  # measured 26.3 dB (bf16)
    assert psnr(video, clip) > 18.0  # recognisable: measured 21.9 dB; the ideal blocky clip gets 23.8 dB


def test_chunks_and_batch_limits_do_not_change_tokens(tiny_root, stage, clip):
    folder = tiny_root / DV_TOKENIZER_DIR
    two = torch.cat([clip, clip.flip(2)], dim=2)  # 66 frames = two chunks
    batch = torch.cat([two, two.flip(3)], dim=0)  # B=2 -> four chunks
    small = VideoTokenizerStage(
        folder / "encoder.jit",
        folder / "decoder.jit",
        levels=TINY_DV_LEVELS,
        max_enc_batch_size=3,
        max_dec_batch_size=1,
    )
    small.load(torch.device("cpu"))
    indices = small.encode(batch)
    assert indices.shape == (2, 10, 4, 6)
    for b in range(2):
        for n in range(2):
            chunk = batch[b : b + 1, :, 33 * n : 33 * (n + 1)]
            assert torch.equal(indices[b : b + 1, 5 * n : 5 * (n + 1)], stage.encode(chunk))
    video = small.decode(indices)
    assert video.shape == (2, 3, 66, 64, 96)
    assert torch.equal(video[1:, :, 33:], stage.decode(indices[1:, 5:]))


def test_bad_shapes_and_tokens_are_user_errors(stage):
    with pytest.raises(BadInput, match="multiple of 33"):
        stage.encode(torch.zeros(1, 3, 30, 64, 96))
    with pytest.raises(BadInput):
        stage.encode(torch.zeros(1, 3, 33, 60, 96))
    with pytest.raises(BadInput, match="vocabulary"):
        stage.decode(torch.full((1, 5, 4, 6), 1600))
    with pytest.raises(BadInput, match="latent frames"):
        stage.decode(torch.zeros(1, 4, 4, 6, dtype=torch.long))


def test_missing_tokenizer_names_the_file(tmp_path):
    stage = VideoTokenizerStage(tmp_path / "encoder.jit", tmp_path / "decoder.jit", levels=TINY_DV_LEVELS)
    with pytest.raises(ModelNotDownloaded, match="encoder.jit"):
        stage.load(torch.device("cpu"))


def test_stage_contract_load_and_unload(tiny_root):
    folder = tiny_root / DV_TOKENIZER_DIR
    stage = VideoTokenizerStage(folder / "encoder.jit", folder / "decoder.jit", levels=TINY_DV_LEVELS)
    assert not stage.loaded and stage.modules() == []
    stage.load(torch.device("cpu"))
    assert len(stage.modules()) == 2 and stage.param_bytes() > 0
    assert all(p.dtype == torch.bfloat16 for m in stage.modules() for p in m.parameters())
    stage.unload()
    assert not stage.loaded


def test_codes_are_found_whatever_the_output_order():
    indices = torch.zeros(1, 5, 4, 6, dtype=torch.int64)
    codes = torch.zeros(1, 4, 5, 4, 6, dtype=torch.bfloat16)
    loss = torch.zeros(1, 1, 1, 1, 6)
    assert _codes_of((indices, codes, loss)) is codes  # released encoder.jit
    assert _codes_of((codes, indices)) is codes
