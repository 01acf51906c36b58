"""Placements: gpu / cpu / disk decisions, host-copy reuse, host-RAM fallback and per-stage records.

A CPU-only machine has one memory, so ``Placements(offload=True)`` runs the same bring-in / park code with
the CPU as the "device": what is checked is the bookkeeping (loads, moves, which host copies are kept and
reused, when a stage is dropped), not transfer speed. Stages are small real modules and the real tiny
tokenizer and AR stages.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.errors import BadInput
from cosmos_cli.offload import placements as offload
from cosmos_cli.offload.placements import Placements, host_bytes
from cosmos_cli.pipeline.stage import Stage
from cosmos_cli.stages.ar_model import ARModelStage
from cosmos_cli.stages.video_tokenizer import VideoTokenizerStage
from tests.conftest import TINY_AR_DIR

CPU = torch.device("cpu")


class ToyStage(Stage):
    """Two small layers and a buffer; counts loads and the devices it was moved to."""

    def __init__(self, name: str = "text_encoder"):
        self.name = name
        self.model: nn.Module | None = None
        self.loads = 0
        self.moved_to: list[str] = []

    def load(self, device: torch.device) -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
        model.register_buffer("offset", torch.arange(4.0))
        self.model = model.to(device)
        self.loads += 1

    def modules(self) -> list[nn.Module]:
        return [] if self.model is None else [self.model]

    def _drop(self) -> None:
        self.model = None

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.moved_to.append(str(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.model.offset


def weight_ptrs(stage: Stage) -> dict[str, int]:
    return {key: p.data_ptr() for key, p in offload.named_parameters(stage)}


def test_policy_defaults_and_validation():
    assert Placements(CPU).placement(ToyStage()) == "gpu"  # one memory: nothing to move
    assert Placements(CPU, {"text_encoder": "cpu"}).placement(ToyStage()) == "gpu"
    on_cuda = Placements(torch.device("cuda"), {"text_encoder": "disk"})
    assert on_cuda.offload
    assert on_cuda.placement(ToyStage()) == "disk"
    assert on_cuda.placement(ToyStage("ar_model")) == "gpu"
    with pytest.raises(BadInput, match="unknown placement 'moon'"):
        Placements(CPU, {"ar_model": "moon"})


def test_cpu_placement_moves_once_per_use_and_reuses_host_copies():
    stage = ToyStage()
    placements = Placements(CPU, {"text_encoder": "cpu"}, offload=True)
    x = torch.randn(3, 16)
    with placements.use(stage) as s:
        first = s(x)
    record = placements.records["text_encoder"]
    assert (record.loads, record.moves, record.uses, stage.loads) == (1, 0, 1, 1)
    assert stage.moved_to == ["cpu"]  # parked after the use
    parked = weight_ptrs(stage)

    for n in range(2, 4):
        with placements.use(stage) as s:
            assert torch.equal(s(x), first)
        assert (record.loads, record.moves, record.uses, stage.loads) == (1, n - 1, n, 1)
        # The kept host copies come back: no new host memory after the first put-away.
        assert weight_ptrs(stage) == parked
    weights = sum(p.numel() * p.element_size() for p in stage.model.parameters())
    assert record.bytes_moved == 2 * weights
    assert placements.moves == {"text_encoder": 2}


def test_a_weight_replaced_during_a_use_gets_a_fresh_host_copy():
    stage = ToyStage()
    placements = Placements(CPU, {"text_encoder": "cpu"}, offload=True)
    placements.prepare(stage)
    before = weight_ptrs(stage)
    with placements.use(stage):
        stage.model[0].weight.data = torch.full((32, 16), 7.0)  # e.g. a stage that re-fuses a projection
    after = weight_ptrs(stage)
    assert after["0.0.weight"] != before["0.0.weight"]
    assert torch.equal(stage.model[0].weight, torch.full((32, 16), 7.0))
    assert after["0.2.weight"] == before["0.2.weight"]


def test_disk_placement_reloads_for_every_use_and_gpu_stays():
    disk, resident = ToyStage("text_guardrail"), ToyStage("ar_model")
    placements = Placements(CPU, {"text_guardrail": "disk"}, offload=True)
    for _ in range(2):
        with placements.use(disk), placements.use(resident):
            pass
        assert not disk.loaded and resident.loaded
    assert disk.loads == 2 and placements.records["text_guardrail"].loads == 2
    assert resident.loads == 1 and resident.moved_to == []
    assert placements.records["ar_model"].moves == 0


def test_prepare_puts_each_stage_in_its_between_uses_state():
    stages = {where: ToyStage(name) for where, name in (("gpu", "ar_model"), ("cpu", "text_encoder"),
                                                         ("disk", "video_guardrail"))}  # fmt: skip
    placements = Placements(CPU, {"text_encoder": "cpu", "video_guardrail": "disk"}, offload=True)
    for stage in stages.values():
        placements.prepare(stage)
        placements.prepare(stage)  # idempotent
    assert stages["gpu"].loaded and stages["gpu"].moved_to == []
    assert stages["cpu"].loaded and stages["cpu"].moved_to == ["cpu"] and stages["cpu"].loads == 1
    assert not stages["disk"].loaded
    with placements.use(stages["cpu"]):
        pass
    assert placements.records["text_encoder"].moves == 1  # parked by prepare: a move, not a load


def test_host_ram_shortage_falls_back_to_disk_with_a_warning(monkeypatch, capsys):
    stage = ToyStage()
    placements = Placements(CPU, {"text_encoder": "cpu"}, offload=True)
    monkeypatch.setattr(offload, "available_host_bytes", lambda: 1024)
    with placements.use(stage):
        pass
    err = capsys.readouterr().err
    assert "does not fit in free host memory" in err and "disk" in err
    assert not stage.loaded
    assert placements.policy["text_encoder"] == "disk"
    assert placements.records["text_encoder"].placement == "disk"
    with placements.use(stage):
        assert stage.loaded
    assert stage.loads == 2


def test_release_frees_a_parked_stage():
    stage = ToyStage()
    placements = Placements(CPU, {"text_encoder": "cpu"}, offload=True)
    placements.prepare(stage)
    placements.release(stage)
    assert not stage.loaded
    with placements.use(stage):
        pass
    assert stage.loads == 2 and placements.records["text_encoder"].moves == 0


def test_host_bytes_counts_the_pinned_allocators_rounding():
    mib = 2**20
    assert host_bytes(86 * mib, pinned=True) == 128 * mib  # Llama-7B MLP matrix in bf16
    assert host_bytes(128 * mib, pinned=True) == 128 * mib
    assert host_bytes(86 * mib + 1, pinned=False) == 86 * mib + 4096


def test_torchscript_tokenizer_survives_park_and_fetch(tiny_checkpoints):
    layout = CheckpointLayout(tiny_checkpoints, TINY_AR_DIR)
    stage = VideoTokenizerStage(layout.dv_encoder, layout.dv_decoder, levels=(8, 8, 5, 5), dtype=torch.float32)
    placements = Placements(CPU, {"video_tokenizer": "cpu"}, offload=True)
    video = torch.rand(1, 3, 33, 64, 96) * 2 - 1
    results = []
    for _ in range(3):
        with placements.use(stage) as s:
            results.append(s.encode(video))
    assert all(torch.equal(r, results[0]) for r in results)
    assert placements.records["video_tokenizer"].moves == 2


def test_ar_stage_generates_the_same_tokens_after_park_and_fetch(tiny_checkpoints):
    stage = ARModelStage(CheckpointLayout(tiny_checkpoints, TINY_AR_DIR), dtype=torch.float32)
    placements = Placements(CPU, {"ar_model": "cpu"}, offload=True)
    args = stage.args
    prompt = torch.cat([torch.full((2, 1), args.bov_token), torch.randint(0, 1600, (2, 24))], 1)
    context = torch.randn(2, args.context_len, args.context_dim)
    outs = []
    for _ in range(2):
        with placements.use(stage) as s:
            outs.append(s.generate(prompt, context, 8, SamplingParams(top_p=0.9), torch.tensor([1, 2])))
    assert torch.equal(outs[0], outs[1])
    assert placements.records["ar_model"].moves == 1
    assert stage.model.layers[0].attention.kv_cache is None  # caches are not parked in host memory
