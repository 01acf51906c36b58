"""The memory plan: stage sizes against hand-computed values (tiny preset) and published parameter counts
(released shapes), the steady-state peak, the placement chooser, and ``offload-profile --plan``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cosmos_cli.cli import main
from cosmos_cli.errors import NotEnoughMemory
from cosmos_cli.guardrail.retinaface import RetinaFace
from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.offload import plan
from cosmos_cli.offload.plan import GIB, StageSize, choose_placements, estimate
from tests.conftest import TINY_AR_DIR

REAL_AR_DIR = "Cosmos-1.0-Autoregressive-5B-Video2World"


@pytest.fixture(scope="module")
def tiny_sizes(tiny_checkpoints) -> dict[str, StageSize]:
    shape = plan.shape_from_checkpoints(tiny_checkpoints, TINY_AR_DIR, batch_size=1)
    return {s.name: s for s in plan.stage_sizes(shape)}


def test_tiny_stage_weights_match_hand_computed_sizes(tiny_checkpoints, tiny_sizes):
    bf16, fp32, int64 = 2, 4, 8
    # AR (TINY_V2W): dim 128, 2 layers, 4 heads / 2 KV heads of 32, SwiGLU 320, context 48, vocab 1600
    # (embedding rows padded to 1664 for <bov>), q/k norms, cross-attention in every layer.
    self_layer = 128 * (128 + 2 * 64) + 128 * 128 + 3 * 128 * 320 + 2 * 128 + 2 * 32
    cross_layer = 128 * 128 + 2 * 48 * 64 + 128 * 128 + 128 + 2 * 32
    ar_params = 2 * self_layer + 2 * cross_layer + 128 + (1664 + 1600) * 128
    assert tiny_sizes["ar_model"].weights == ar_params * bf16 == 1_681_664

    # T5 encoder (tiny): d_model 48, 2 layers, 4 heads of 16, relu FF 96, 32 relative-position buckets.
    vocab = json.loads((tiny_checkpoints / "google-t5/t5-11b/config.json").read_text())["vocab_size"]
    t5_layer = 4 * 48 * 64 + 48 + 2 * 48 * 96 + 48
    t5_params = vocab * 48 + 2 * t5_layer + 32 * 4 + 48
    assert tiny_sizes["text_encoder"].weights == t5_params * bf16

    # DV tokenizer files: encoder 1x1x1 conv 3->4 (+ bias) and its code range (2 x 4); decoder conv 4->3.
    assert tiny_sizes["video_tokenizer"].weights == (3 * 4 + 4 + 2 * 4 + 4 * 3 + 3) * bf16
    assert tiny_sizes["video_tokenizer"].basis == "files"

    # Diffusion decoder: the DiT's own parameter formula, its RoPE position table (max(240 // 2, 128)
    # entries) and the tiny CV decoder's 1x1x1 conv 16->3 without bias.
    dd = DiTConfig.from_json(tiny_checkpoints / "Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8/cosmos_arch.json")
    assert tiny_sizes["diffusion_decoder"].weights == (dd.num_params() + 128 + 16 * 3) * bf16

    # LlamaGuard stand-in: hidden 32, MLP 64, 2 layers, 4 heads (head dim 8), untied head; rotary tables
    # (inv_freq, original_inv_freq: 4 each); Aegis LoRA r=4 on q and v.
    llama_vocab = json.loads(next((tiny_checkpoints / "Cosmos-1.0-Guardrail/aegis").rglob("config.json")).read_text())
    llama_vocab = llama_vocab["vocab_size"]
    llama_layer = 4 * 32 * 32 + 3 * 32 * 64 + 2 * 32
    llama = 2 * llama_vocab * 32 + 2 * llama_layer + 32 + 2 * 4
    lora = 2 * 2 * 4 * (32 + 32)
    assert tiny_sizes["text_guardrail"].weights == (llama + lora) * bf16

    # Video guardrail in fp32: SigLIP vision (32 wide, 1 layer, 32-pixel images of 8-pixel patches), the
    # 7-class MLP on its 32-d embedding, RetinaFace-R50 (fixed by its file, counted from the module).
    block = 4 * (32 * 32 + 32) + 2 * 2 * 32 + (32 * 64 + 64 + 64 * 32 + 32)
    head = 32 + (3 * 32 * 32 + 3 * 32 + 32 * 32 + 32) + 2 * 32 + (32 * 64 + 64 + 64 * 32 + 32)
    siglip = (3 * 8 * 8 * 32 + 32) + 16 * 32 + block + 2 * 32 + head
    mlp = (32 * 512 + 512) + 4 * 512 + (512 * 256 + 256) + 4 * 256 + (256 * 7 + 7)
    retina = RetinaFace()
    retina_bytes = sum(t.numel() * t.element_size() for t in [*retina.parameters(), *retina.buffers()])
    position_ids, bn_counters = 16, 2
    expected = (siglip + mlp) * fp32 + (position_ids + bn_counters) * int64 + retina_bytes
    assert tiny_sizes["video_guardrail"].weights == expected


def test_tiny_work_and_steady_state_peaks(tiny_sizes):
    # AR, batch 1: KV cache 2 x 2 layers x 2 heads x 128 positions x 32, cross K/V of 512 context positions,
    # the 9-frame prefill (1 + 2 x 24 tokens) through SwiGLU/qkv/residual widths, fp32 logits.
    kv = 2 * 2 * 2 * 128 * 32 * 2
    cross = 2 * 2 * 2 * 512 * 32 * 2
    prefill = 49 * (2 * 320 + 256 + 3 * 128) * 2
    assert tiny_sizes["ar_model"].work == kv + cross + prefill + 1600 * 4
    # T5, one prompt of 512 tokens: bf16 scores + fp32 softmax, position bias, FF twice, fp32 residuals.
    t5 = 4 * 512 * 512 * (2 * 2 + 4) + 4 * 512 * 512 * 2 + 2 * 512 * 96 * 2 + 4 * 512 * 48 * 4
    assert tiny_sizes["text_encoder"].work == t5
    # Diffusion decoder: one 8-frame window of 8 x 12 latents, patch 2 -> 192 tokens, batch 2 (guidance).
    assert tiny_sizes["diffusion_decoder"].work == 2 * 192 * (4 * 64 + 6 * 64) * 2

    assert tiny_sizes["ar_model"].kept == kv + cross  # stays allocated while the AR model is resident

    sizes = list(tiny_sizes.values())
    weights = sum(s.weights for s in sizes)
    none = estimate(sizes, {})
    others = max(s.work for s in sizes if s.name != "ar_model")
    assert none.peak == weights + max(kv + cross + others, tiny_sizes["ar_model"].work)
    everything = estimate(sizes, dict.fromkeys(tiny_sizes, "cpu"))
    assert everything.peak == max(s.weights + s.work for s in sizes)
    assert everything.moved == weights  # the diffusion decoder is on: the tokenizer only encodes
    assert none.moved == 0 and none.host == 0


def test_released_shapes_match_published_parameter_counts(tmp_path):
    shape = plan.shape_from_checkpoints(tmp_path, REAL_AR_DIR)  # no checkpoints: the released sizes
    sizes = {s.name: s for s in plan.stage_sizes(shape)}
    assert sizes["ar_model"].weights == 4_584_845_312 * 2  # spec 1.2: 4.585 B parameters in bf16
    assert sizes["text_encoder"].weights == 4_864_791_552 * 2  # T5-11B encoder, ~4.86 B, bf16 by default
    assert sizes["diffusion_decoder"].weights == (DiTConfig().num_params() + 128) * 2 + plan.TOKENIZER_WEIGHTS
    assert 6.74e9 * 2 < sizes["text_guardrail"].weights < 6.76e9 * 2  # LlamaGuard-7b + LoRA
    assert sizes["video_tokenizer"].basis == "NVIDIA's table"
    fp32 = plan.shape_from_checkpoints(tmp_path, REAL_AR_DIR, text_encoder_dtype="fp32")
    assert plan.text_encoder_size(fp32).weights == 4_864_791_552 * 4  # ~19.5 GB, as the reference loads it


def _toy(with_dd: bool = True) -> list[StageSize]:
    g = GIB
    table = [
        ("text_guardrail", 12 * g, g),
        ("text_encoder", 9 * g, g),
        ("video_tokenizer", g // 4, g // 4),
        ("ar_model", 9 * g, 2 * g),
        ("diffusion_decoder", 14 * g, 3 * g),
        ("video_guardrail", 2 * g, g),
    ]
    sizes = [StageSize(name, weights, work, "toy") for name, weights, work in table]
    return sizes if with_dd else [s for s in sizes if s.name != "diffusion_decoder"]


def test_estimate_counts_moves_and_the_tokenizer_twice_without_dd():
    est = estimate(_toy(with_dd=False), {"video_tokenizer": "cpu", "text_encoder": "disk"})
    assert est.moved == 2 * (GIB // 4) + 9 * GIB
    assert est.seconds == pytest.approx(2 * (GIB // 4) / plan.H2D_BYTES_PER_S + 9 * GIB / plan.DISK_BYTES_PER_S)
    assert est.host == GIB // 4  # only cpu placements hold host copies
    resident = 12 + 9 + 2
    assert est.peak == (resident + 9 + 1) * GIB and est.peak_stage == "text_encoder"


def test_chooser_takes_the_cheapest_placement_that_fits():
    sizes = _toy()
    assert set(choose_placements(sizes, 80 * GIB, host_bytes_free=256 * GIB).policy.values()) == {"gpu"}
    best = choose_placements(sizes, 24 * GIB, host_bytes_free=256 * GIB)
    assert best.fits(24 * GIB)
    assert "disk" not in best.policy.values()
    # No other gpu/cpu placement that fits moves fewer bytes.
    for where in ("gpu", "cpu"):
        for name in best.policy:
            other = dict(best.policy) | {name: where}
            est = estimate(sizes, other)
            if est.fits(24 * GIB):
                assert est.moved >= best.moved
    # Little host memory: the big stages are read from disk instead of parked.
    tight = choose_placements(sizes, 24 * GIB, host_bytes_free=10 * GIB)
    assert "disk" in tight.policy.values()
    assert tight.host <= 0.9 * 10 * GIB
    # Explicit placements are kept.
    fixed = choose_placements(sizes, 80 * GIB, host_bytes_free=256 * GIB, fixed={"ar_model": "cpu"})
    assert fixed.policy["ar_model"] == "cpu"
    with pytest.raises(NotEnoughMemory, match="diffusion_decoder stage needs about"):
        choose_placements(sizes, 12 * GIB, host_bytes_free=256 * GIB)


def test_stream_estimate_of_the_tiny_t5_matches_hand_computed_sizes(tiny_checkpoints):
    bf16 = 2
    base = plan.shape_from_checkpoints(tiny_checkpoints, TINY_AR_DIR, batch_size=1)
    shape = dataclasses.replace(base, t5_config=dict(base.t5_config, num_layers=4))
    t5 = plan.text_encoder_size(shape)
    vocab = base.t5_config["vocab_size"]
    layer = 4 * 48 * 64 + 48 + 2 * 48 * 96 + 48  # q, k, v, o + norm; relu FF in/out + norm
    bias = 32 * 4  # relative-position buckets x heads: block 0 only
    non_block = vocab * 48 + 48  # shared embedding (tied with the encoder's) and the final norm
    assert t5.weights == (non_block + 4 * layer + bias) * bf16
    assert (t5.streamed, t5.window, t5.passes) == ((4 * layer + bias) * bf16, (2 * layer + bias) * bf16, 1)
    work = 4 * 512 * 512 * (2 * 2 + 4) + 4 * 512 * 512 * 2 + 2 * 512 * 96 * 2 + 4 * 512 * 48 * 4
    assert t5.work == work
    est = estimate([t5], {"text_encoder": "stream"})
    assert est.peak == (non_block + 2 * layer + bias) * bf16 + work  # non-block + the 2 largest blocks + work
    assert est.moved == t5.weights and est.host == t5.host_bytes
    assert est.seconds == pytest.approx(t5.weights / plan.H2D_BYTES_PER_S)
    # Nine prompts are two T5 groups: the blocks come in twice.
    nine = plan.text_encoder_size(dataclasses.replace(shape, batch_size=9))
    assert estimate([nine], {"text_encoder": "stream"}).moved == nine.weights + nine.streamed
    # The tiny decoder: both blocks stream; one window of 16 guided denoiser calls per sample.
    sizes = {s.name: s for s in plan.stage_sizes(base)}
    dd = sizes["diffusion_decoder"]
    assert 0 < dd.streamed == dd.window < dd.weights and dd.passes == 16
    assert sizes["ar_model"].streamed == sizes["video_tokenizer"].streamed == 0  # never streamed


def _streamable(sizes: list[StageSize]) -> list[StageSize]:
    """The toy sizes with the guardrail LLM and the decoder made of blocks."""
    g = GIB
    blocks = {"text_guardrail": (11 * g, 2 * g, 3), "diffusion_decoder": (13 * g, 2 * g, 16)}
    return [dataclasses.replace(s, streamed=blocks[s.name][0], window=blocks[s.name][1], passes=blocks[s.name][2])
            if s.name in blocks else s for s in sizes]  # fmt: skip


def test_chooser_streams_only_where_cpu_does_not_fit():
    sizes = _streamable(_toy())
    for budget in (80, 24):
        assert "stream" not in choose_placements(sizes, budget * GIB, host_bytes_free=256 * GIB).policy.values()
    # 14 GiB: neither the guardrail (12 + 1) nor the decoder (14 + 3) fits whole; streamed they take 4 and 6.
    best = choose_placements(sizes, 14 * GIB, host_bytes_free=256 * GIB)
    streamed = {k for k, v in best.policy.items() if v == "stream"}
    assert streamed == {"text_guardrail", "diffusion_decoder"} and best.fits(14 * GIB)
    resident = sum(s.weights for s in sizes if best.policy[s.name] == "gpu")  # the tokenizer may stay
    assert best.peak_stage == "ar_model" and best.peak == resident + (9 + 2) * GIB
    dd = sizes[4]
    assert best.moved >= 12 * GIB + 1 * GIB + 3 * 11 * GIB + 1 * GIB + 16 * 13 * GIB  # blocks once per pass
    with pytest.raises(NotEnoughMemory, match="ar_model stage needs about"):
        choose_placements(sizes, 10 * GIB, host_bytes_free=256 * GIB)
    assert estimate(sizes, {"diffusion_decoder": "stream"}).moved == dd.weights - dd.streamed + 16 * dd.streamed
    # A stage without blocks is never streamed by the chooser; asked for, it is kept and counted as cpu.
    assert all(best.policy[s.name] != "stream" for s in sizes if not s.streamed)
    kept = choose_placements(sizes, 80 * GIB, host_bytes_free=256 * GIB, fixed={"video_guardrail": "stream"})
    assert kept.policy["video_guardrail"] == "stream" and kept.moved == 2 * GIB


def test_plan_command_prints_and_writes_the_estimate(tmp_path, capsys):
    out = tmp_path / "plan.json"
    code = main(["offload-profile", "--plan", "--gpu-memory", "24", "--host-memory", "64",
                 "--checkpoint-dir", str(tmp_path), "--json", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "ESTIMATE" in printed and "66.2 GB" in printed and "cosmos-cli generate" in printed
    report = json.loads(out.read_text())
    assert report["kind"] == "estimate" and report["gpu_memory_gib"] == 24
    rows = {r["strategy"]: r for r in report["rows"]}
    assert list(rows) == ["none", "guardrails", "guardrails+t5", "guardrails+t5+dd", "all-but-ar", "all",
                          "all-stream", "auto"]  # fmt: skip
    assert rows["none"]["nvidia"] == "66.2 GB" and rows["all"]["nvidia"] == "21.1 GB"
    # Streaming the big stages leaves the AR stage the largest: under AR weights + KV cache + 2 GiB.
    stream = rows["all-stream"]
    assert stream["nvidia"] is None and stream["peak_stage"] == "ar_model"
    assert stream["peak_gib"] < 11.3 < rows["all"]["peak_gib"]
    assert stream["policy"]["diffusion_decoder"] == "stream" and stream["policy"]["ar_model"] == "cpu"
    assert stream["bring_in_s_per_batch"] > rows["all"]["bring_in_s_per_batch"]  # blocks once per pass
    assert not rows["none"]["fits"] and rows["all"]["fits"] and rows["auto"]["fits"]
    assert rows["all"]["peak_stage"] == "diffusion_decoder"
    assert rows["auto"]["bring_in_s_per_batch"] <= rows["all"]["bring_in_s_per_batch"]
    assert report["recommended"]["flags"].startswith("--")
    assert [s["name"] for s in report["stages"]][:2] == ["text_guardrail", "text_encoder"]


def test_plan_without_gpu_needs_a_budget_and_measuring_needs_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the messages of a machine without a GPU")
    assert main(["offload-profile", "--plan", "--checkpoint-dir", str(tmp_path)]) == 2
    assert "--gpu-memory" in capsys.readouterr().err
    assert main(["offload-profile", "--checkpoint-dir", str(tmp_path)]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
