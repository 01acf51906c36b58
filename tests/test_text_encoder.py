"""The T5 text encoder stage on the tiny ``google-t5/t5-11b`` checkpoint (full encoder-decoder file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cosmos_cli.checkpoints import T5_DIR
from cosmos_cli.errors import BadInput, CheckpointMismatch, ModelNotDownloaded
from cosmos_cli.stages.text_encoder import TextEncoderStage, quiet_transformers
from cosmos_cli.tiny.t5 import write_tiny_t5

PROMPTS = ["a red cube", "the robot moves the arm"]
LONG_PROMPT = (
    "A video recorded from a moving vehicle's perspective, capturing roads, buildings, landscapes, and "
    "changing weather and lighting conditions."
)
MAX_LEN = 16  # the tiny golden sets' context_len


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    write_tiny_t5(root)
    return root / T5_DIR


@pytest.fixture(scope="module")
def stage(t5_dir) -> TextEncoderStage:
    stage = TextEncoderStage(t5_dir)
    stage.load(torch.device("cpu"))
    return stage


def test_tokenizer_has_t5_special_ids(stage):
    batch = stage.tokenize(PROMPTS, MAX_LEN)
    assert batch.input_ids.shape == (2, MAX_LEN)
    tok = stage._tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    for ids, length in zip(batch.input_ids, batch.attention_mask.sum(1), strict=True):
        assert ids[length - 1] == 1 and (ids[length:] == 0).all()


def test_encode_shapes_zero_padding_and_all_ones_mask(stage):
    embeddings, mask = stage.encode(PROMPTS, max_length=MAX_LEN)
    assert embeddings.shape == (2, MAX_LEN, 48) and embeddings.dtype == torch.float32
    assert mask.shape == (2, MAX_LEN) and mask.dtype == torch.bool and bool(mask.all())
    lengths = stage.tokenize(PROMPTS, MAX_LEN).attention_mask.sum(1)
    assert (lengths < MAX_LEN).all()
    nonzero_rows = embeddings.abs().sum(-1) > 0
    for row, length in zip(nonzero_rows, lengths, strict=True):
        assert row[:length].all() and not row[length:].any()
    # A prompt's embedding does not depend on its batch neighbours or on the padded length.
    single, _ = stage.encode(PROMPTS[:1], max_length=MAX_LEN)
    torch.testing.assert_close(single[0], embeddings[0], atol=1e-5, rtol=1e-5)
    longer, _ = stage.encode(PROMPTS[:1], max_length=2 * MAX_LEN)
    torch.testing.assert_close(longer[0, :MAX_LEN], embeddings[0], atol=1e-5, rtol=1e-5)


def test_long_prompt_is_truncated_to_max_length_ending_in_eos(stage):
    ids = stage.tokenize([LONG_PROMPT], MAX_LEN).input_ids[0]
    assert len(stage._tokenizer(LONG_PROMPT).input_ids) > MAX_LEN
    assert ids.shape == (MAX_LEN,) and ids[-1] == 1 and (ids != 0).all()
    embeddings, _ = stage.encode([LONG_PROMPT], max_length=MAX_LEN)
    assert (embeddings[0].abs().sum(-1) > 0).all()


def test_bf16_stays_close_to_fp32(t5_dir, stage, record_property):
    """Issue 7: T5 may run in bf16 if that keeps the output within tolerance of fp32."""
    reference, _ = stage.encode(PROMPTS + [LONG_PROMPT], max_length=MAX_LEN)
    bf16 = TextEncoderStage(t5_dir, dtype=torch.bfloat16)
    bf16.load(torch.device("cpu"))
    assert next(bf16.modules()[0].parameters()).dtype == torch.bfloat16
    ours, _ = bf16.encode(PROMPTS + [LONG_PROMPT], max_length=MAX_LEN)
    assert ours.dtype == torch.float32
    max_abs = float((ours - reference).abs().max())
    relative = max_abs / float(reference.abs().max())
    valid = reference.abs().sum(-1) > 0
    cosine = torch.nn.functional.cosine_similarity(ours[valid], reference[valid], dim=-1).min()
    record_property("t5_bf16_vs_fp32_max_abs_diff", max_abs)
    record_property("t5_bf16_vs_fp32_relative_diff", relative)
    print(f"tiny T5 bf16 vs fp32: max |diff| {max_abs:.4f} ({relative:.2%} of max), min cosine {cosine:.5f}")
    assert relative < 0.03  # measured ~0.8 %
    assert cosine > 0.999
    assert not torch.equal(ours, reference)  # bf16 really ran


def test_encoder_only_load_from_full_checkpoint(t5_dir, stage):
    from transformers import T5EncoderModel

    full = torch.load(t5_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert any(k.startswith("decoder.") for k in full) and any(k.startswith("encoder.") for k in full)
    with quiet_transformers():
        _, info = T5EncoderModel.from_pretrained(t5_dir, output_loading_info=True)
    assert not info["missing_keys"]
    assert all(k.startswith(("decoder.", "lm_head.")) for k in info["unexpected_keys"])
    loaded = stage.modules()[0].state_dict()
    assert not any(k.startswith("decoder.") for k in loaded)
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    assert torch.equal(loaded[key], full[key])
    assert torch.equal(loaded["shared.weight"], full["shared.weight"])


def test_safetensors_checkpoint_loads_the_same_weights(tmp_path, stage):
    write_tiny_t5(tmp_path, weights_format="safetensors")
    folder = tmp_path / T5_DIR
    assert (folder / "model.safetensors").exists() and not (folder / "pytorch_model.bin").exists()
    other = TextEncoderStage(folder)
    other.load(torch.device("cpu"))
    ours, _ = other.encode(PROMPTS, max_length=MAX_LEN)
    reference, _ = stage.encode(PROMPTS, max_length=MAX_LEN)
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


def test_checkpoint_missing_an_encoder_weight_is_refused(tmp_path, t5_dir):
    broken = tmp_path / "t5"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).write_bytes((t5_dir / name).read_bytes())
    state = torch.load(t5_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    del state["encoder.block.0.layer.0.SelfAttention.q.weight"]
    torch.save(state, broken / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatch, match="SelfAttention.q.weight"):
        TextEncoderStage(broken).load(torch.device("cpu"))


def test_missing_files_name_the_download(tmp_path, t5_dir):
    with pytest.raises(ModelNotDownloaded, match="config.json"):
        TextEncoderStage(tmp_path / "nowhere").load(torch.device("cpu"))
    (tmp_path / "config.json").write_bytes((t5_dir / "config.json").read_bytes())
    with pytest.raises(ModelNotDownloaded, match="weights"):
        TextEncoderStage(tmp_path).load(torch.device("cpu"))


def test_empty_prompt_list_is_bad_input(stage):
    with pytest.raises(BadInput):
        stage.encode([], max_length=MAX_LEN)


def test_unload_drops_the_model(t5_dir):
    stage = TextEncoderStage(t5_dir)
    stage.load(torch.device("cpu"))
    assert stage.loaded and stage.param_bytes() > 0 and stage.d_model == 48
    stage.unload()
    assert not stage.loaded and stage.modules() == []
