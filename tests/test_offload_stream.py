"""``stream`` placement: blocks brought to the "device" one at a time while a stage runs.

On a CPU-only machine ``Placements(offload=True)`` runs the same code with the CPU as the device: a block's
"device" copy is a clone of its kept host copy, so which blocks are in is visible by comparing each weight's
storage with its host copy. What is checked: outputs equal the resident (``gpu``) ones exactly, at most two
blocks of a list are in at once, hooks and host copies are as before after the use, the refusals, and, by a
torch-function mode that flags any op reading a parked block weight, that no code outside a block's own
forward touches its weights (which on a GPU would be a device mismatch).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.cli import main
from cosmos_cli.errors import BadInput
from cosmos_cli.offload import placements as offload
from cosmos_cli.offload.placements import Placements
from cosmos_cli.offload.streaming import block_list, find_blocks, stage_blocks
from cosmos_cli.pipeline.stage import Stage
from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage
from cosmos_cli.stages.text_encoder import TextEncoderStage
from tests.conftest import TINY_AR_DIR, shared_path

CPU = torch.device("cpu")
N_BLOCKS = 6


class Block(nn.Module):
    def __init__(self, width: int, log: list):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.log = log

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for check in self.log:
            check(self)
        return h + self.fc2(torch.tanh(self.fc1(h)))


class Net(nn.Module):
    """Embedding, six blocks holding most of the weights, a head and a buffer."""

    def __init__(self, log: list):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(Block(16, log) for _ in range(N_BLOCKS))
        self.head = nn.Linear(16, 4)
        self.register_buffer("scale", torch.arange(1.0, 5.0))

    def forward(self, x: torch.Tensor, step: int = 1) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks[::step]:
            h = block(h)
        return self.head(h) * self.scale


class ToyStage(Stage):
    def __init__(self, name: str = "diffusion_decoder"):
        self.name = name
        self.net: Net | None = None
        self.log: list = []
        self.loaded_on: list[str] = []

    def load(self, device: torch.device) -> None:
        torch.manual_seed(0)
        self.net = Net(self.log).to(device)
        self.loaded_on.append(str(device))

    def modules(self) -> list[nn.Module]:
        return [] if self.net is None else [self.net]

    def _drop(self) -> None:
        self.net = None


def host_ptrs(stage: Stage) -> dict[str, int]:
    return {key: p.data_ptr() for key, p in offload.named_parameters(stage)}


def block_bytes(block: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*block.parameters(), *block.buffers()])


class Watch:
    """Called at the start of every block's forward: which blocks are on the device (not their host copies)."""

    def __init__(self, stage: ToyStage):
        self.blocks = list(stage.net.blocks)
        self.host = {id(b): b.fc1.weight.data_ptr() for b in self.blocks}
        self.most = 0
        self.calls = 0

    def __call__(self, running: Block) -> None:
        resident = [b for b in self.blocks if b.fc1.weight.data_ptr() != self.host[id(b)]]
        assert running in resident, "a block ran on its host copy"
        self.most = max(self.most, len(resident))
        self.calls += 1


def test_stream_gives_the_resident_outputs_with_at_most_two_blocks_in():
    x = torch.randn(3, 8)
    resident = ToyStage()
    resident.load(CPU)
    expected = resident.net(resident.net(x)[:, :1].expand(3, 8).contiguous())

    stage = ToyStage()
    placements = Placements(CPU, {"diffusion_decoder": "stream"}, offload=True)
    placements.prepare(stage)
    assert stage.loaded_on == ["cpu"]  # streamed stages are loaded on the host, never whole on the device
    parked = host_ptrs(stage)
    watch = Watch(stage)
    stage.log.append(watch)
    for use in range(1, 3):
        with placements.use(stage) as s:
            first = s.net(x)  # two forward passes per use, like diffusion steps
            out = s.net(first[:, :1].expand(3, 8).contiguous())
        assert torch.equal(out, expected)
        record = placements.records["diffusion_decoder"]
        # Block 0 prefetched at bring-in, then each pass prefetches the next block, wrapping to block 0.
        assert record.block_copies == use * (1 + 2 * N_BLOCKS)
        assert (record.moves, record.loads, record.uses) == (use, 1, use)  # loaded once, by prepare
    assert watch.calls == 2 * 2 * N_BLOCKS and watch.most == 2
    net = stage.net
    blocks_bytes = sum(block_bytes(b) for b in net.blocks)
    other = sum(p.numel() * p.element_size() for n, p in net.named_parameters() if not n.startswith("blocks."))
    assert record.bytes_moved == 2 * (other + (1 + 2 * N_BLOCKS) * blocks_bytes // N_BLOCKS)
    # Put away: no hooks left, every weight back on its kept host copy, nothing still streaming.
    for module in net.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks
    assert host_ptrs(stage) == parked
    assert not placements._streams and "diffusion_decoder" in placements._parked
    assert [name for name, _ in net.named_children()] == ["embed", "blocks", "head"]  # put back in place


def test_skipped_blocks_do_not_pile_up_on_the_device():
    stage = ToyStage()
    placements = Placements(CPU, {"diffusion_decoder": "stream"}, offload=True)
    placements.prepare(stage)
    watch = Watch(stage)
    stage.log.append(watch)
    x = torch.randn(2, 8)
    with placements.use(stage) as s:
        for _ in range(3):
            out = s.net(x, step=2)  # blocks 0, 2, 4: each prefetched successor is skipped
    assert watch.calls == 9 and watch.most == 2
    resident = ToyStage()
    resident.load(CPU)
    assert torch.equal(out, resident.net(x, step=2))


def test_block_finder_picks_the_repeated_blocks():
    net = Net([])
    assert find_blocks(net) is net.blocks
    # A ModuleDict of blocks (the diffusion decoder's) is found alike.
    from cosmos_cli.models.diffusion_decoder.config import DD_7B
    from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT

    with torch.device("meta"):
        dit = DiffusionDecoderDiT(DD_7B)
    assert find_blocks(dit) is dit.blocks and len(block_list(dit.blocks)) == 28
    # Blocks holding under half the parameters are not worth it: the module moves whole.
    wide = Net([])
    wide.head = nn.Linear(16, 4000)
    assert find_blocks(wide) is None
    # A weight tied between a block and the rest must stay resident: no streaming.
    tied = Net([])
    tied.embed.weight = nn.Parameter(torch.randn(16, 8))
    tied.blocks[2].fc1.extra = nn.Linear(8, 16)
    tied.blocks[2].fc1.extra.weight = tied.embed.weight
    assert find_blocks(tied) is None
    assert find_blocks(nn.Linear(4, 4)) is None

    class Custom(ToyStage):
        def stream_blocks(self):
            return [self.net.blocks[:3]]

    custom = Custom()
    custom.load(CPU)
    (chosen,) = stage_blocks(custom)
    assert list(chosen) == list(custom.net.blocks[:3])


def test_stream_is_refused_for_the_ar_model_and_the_tokenizer(tiny_checkpoints, tmp_path, capsys):
    with pytest.raises(BadInput, match="ar_model cannot use stream placement .*use gpu or cpu"):
        Placements(CPU, {"ar_model": "stream"})
    with pytest.raises(BadInput, match="video_tokenizer cannot use stream placement"):
        Placements(CPU, {"video_tokenizer": "stream"})
    clip = shared_path("data", "clips", "input.mp4")
    code = main(["generate", "--checkpoint-dir", str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR,
                 "--input", str(clip), "--prompt", "a car", "--output-dir", str(tmp_path),
                 "--placement", "ar_model=stream"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ar_model cannot use stream placement (use gpu or cpu for it") and "\n" not in err


def test_host_memory_shortage_falls_back_to_disk(monkeypatch, capsys):
    stage = ToyStage("text_encoder")
    placements = Placements(CPU, {"text_encoder": "stream"}, offload=True)
    monkeypatch.setattr(offload, "available_host_bytes", lambda: 1024)
    x = torch.randn(2, 8)
    with placements.use(stage) as s:
        out = s.net(x)
    assert "does not fit in free host memory" in capsys.readouterr().err
    assert placements.policy["text_encoder"] == "disk" and not stage.loaded
    resident = ToyStage()
    resident.load(CPU)
    assert torch.equal(out, resident.net(x))


def test_compiled_blocks_stream_without_recompiling():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    stage = ToyStage()
    placements = Placements(CPU, {"diffusion_decoder": "stream"}, offload=True)
    placements.prepare(stage)
    for block in stage.net.blocks:
        block.compile(fullgraph=True, backend=backend)
    x = torch.randn(3, 8)
    resident = ToyStage()
    resident.load(CPU)
    outs, n_graphs = [], []
    for _ in range(3):
        with placements.use(stage) as s, torch.inference_mode():
            outs += [s.net(x), s.net(x)]
        n_graphs.append(len(graphs))
    # Compiled in the first use; the hooks run outside the graph, and new hooks, the swapped weights and the
    # inference mode do not make later uses recompile.
    assert n_graphs[0] >= 1 and n_graphs == [n_graphs[0]] * 3
    assert all("tanh" in gm.code for gm in graphs)  # only block forwards were traced, never the hooks
    assert all(torch.equal(out, resident.net(x)) for out in outs)
    assert placements.records["diffusion_decoder"].block_copies == 3 * (1 + 2 * N_BLOCKS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side-stream path needs a CUDA device")
def test_stream_on_cuda_matches_resident_within_a_two_block_window():
    cuda = torch.device("cuda")

    class Wide(ToyStage):
        def load(self, device: torch.device) -> None:
            torch.manual_seed(0)
            net = Net(self.log)
            net.embed, net.head = nn.Linear(8, 1024), nn.Linear(1024, 4)
            net.blocks = nn.ModuleList(Block(1024, self.log) for _ in range(8))  # 16 MiB each in fp32
            self.net = net.requires_grad_(False).to(device)

    x = torch.randn(64, 8, device=cuda)
    resident = Wide()
    resident.load(cuda)
    with torch.inference_mode():
        expected = resident.net(x)
    block = block_bytes(resident.net.blocks[0])
    del resident
    torch.cuda.empty_cache()
    stage = Wide()
    placements = Placements(cuda, {"diffusion_decoder": "stream"})
    placements.prepare(stage)
    with placements.use(stage) as s, torch.inference_mode():
        outs = [s.net(x) for _ in range(3)]
    assert all(torch.equal(out, expected) for out in outs)
    record = placements.records["diffusion_decoder"]
    assert record.block_copies == 1 + 3 * 8
    assert record.peak_allocated - record.resident_before < 4 * block  # cpu placement would hold all 8
    assert all(p.device.type == "cpu" and p.is_pinned() for p in stage.net.parameters())


# ---- real stages ------------------------------------------------------------------------------
class NoParkedBlockReads(TorchFunctionMode):
    """Flags any op whose input is a block weight still on its host copy, outside the placement code
    (which copies from the host copies on purpose)."""

    SKIP = ("cosmos_cli/offload/placements.py", "cosmos_cli/offload/streaming.py")

    def __init__(self, stages):
        """``stages``: the streamed ones (the others' weights are on the device whole while they run)."""
        super().__init__()
        self.parked = {
            t.data_ptr(): name
            for stage in stages
            for container in stage_blocks(stage)
            for block in block_list(container)
            for name, t in [*block.named_parameters(), *block.named_buffers()]
        }
        self.reads: list[str] = []
        self.checked = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for leaf in tree_leaves((args, kwargs)):
            if isinstance(leaf, torch.Tensor) and leaf.data_ptr() in self.parked and not self._placing():
                self.reads.append(f"{getattr(func, '__name__', func)}({self.parked[leaf.data_ptr()]})")
        self.checked += 1
        return func(*args, **kwargs)

    def _placing(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename.endswith(self.SKIP):
                return True
            frame = frame.f_back
        return False


def test_tiny_t5_and_diffusion_decoder_stream_exactly(tiny_checkpoints):
    layout = CheckpointLayout(tiny_checkpoints, TINY_AR_DIR)
    prompts = ["a red car drives down a wet street at night", "a cat"]
    tokens = torch.randint(0, 64, (1, 5, 4, 6), generator=torch.Generator().manual_seed(0))
    results = {}
    for where in ("gpu", "stream"):
        t5 = TextEncoderStage(layout.t5_dir, dtype=torch.float32)
        dd = DiffusionDecoderStage(layout, dtype=torch.float32)
        dd.settings = dd.settings.__class__(num_steps=2, guidance=dd.settings.guidance)
        placements = Placements(CPU, {"text_encoder": where, "diffusion_decoder": where}, offload=True)
        for stage in (t5, dd):
            placements.prepare(stage)
        guard = NoParkedBlockReads([t5, dd])
        with guard:
            with placements.use(t5) as s:
                context, _ = s.encode(prompts)
            with placements.use(dd) as s:
                video = s.run(tokens, context[:1].to(torch.float32), num_frames=33)
        results[where] = (context, video, placements.records)
        if where == "stream":
            assert guard.checked > 100 and guard.reads == []
            assert len(stage_blocks(t5)) == 1 and len(stage_blocks(dd)) == 1
    (c_gpu, v_gpu, _), (c_stream, v_stream, records) = results["gpu"], results["stream"]
    assert torch.equal(c_stream, c_gpu) and torch.equal(v_stream, v_gpu)
    # T5: one pass over its 2 blocks (+ the wrap-around prefetch); the decoder: one pass per denoiser call.
    assert records["text_encoder"].block_copies == 1 + 2
    assert records["diffusion_decoder"].block_copies == 1 + 2 * dd.settings.x0_calls


def test_standin_pipeline_streams_every_stage_that_can(tiny_checkpoints, tmp_path):
    from cosmos_cli.offload import profile as prof
    from cosmos_cli.offload.plan import STREAM_STRATEGIES
    from cosmos_cli.pipeline.pipeline import PipelineConfig
    from cosmos_cli.pipeline.samples import Sample
    from cosmos_cli.pipeline.standins import StandInPipeline

    policy = STREAM_STRATEGIES[0].policy()
    config = PipelineConfig(checkpoint_dir=tiny_checkpoints, ar_model_dir=TINY_AR_DIR, device="cpu",
                            load_format="dummy", placements=dict(policy))  # fmt: skip
    pipeline = StandInPipeline(config, tmp_path / "standins")
    pipeline.diffusion_decoder.settings = pipeline.diffusion_decoder.settings.__class__(num_steps=1)
    pipeline.placements.offload = True
    for stage in pipeline.stages():
        pipeline.placements.prepare(stage)
    args = pipeline.args
    clip = prof.make_clip(tmp_path / "clip.mp4", args.video_height, args.video_width)
    guard = NoParkedBlockReads([s for s in pipeline.stages() if policy.get(s.name) == "stream"])
    with guard:
        results = pipeline.run([Sample("s0", prof.PROMPT, clip, seed=0)], tmp_path / "out", overwrite=True)
    assert [r.status for r in results] == ["succeeded"], results[0].error
    assert guard.reads == []
    records = pipeline.placements.records
    for name in ("text_guardrail", "text_encoder", "diffusion_decoder"):
        assert records[name].placement == "stream" and records[name].block_copies > 1, name
    # The tiny SigLIP's one layer is under half its weights (RetinaFace has no block list): moved whole.
    assert records["video_guardrail"].placement == "stream" and records["video_guardrail"].block_copies == 0
    assert records["video_guardrail"].bytes_moved > 0
    # LlamaGuard's stand-in: prefill + one decode step, each streaming both layers (+ the first prefetch).
    assert records["text_guardrail"].block_copies == 1 + 2 * 2
    assert records["ar_model"].placement == "cpu" and records["ar_model"].block_copies == 0
    generation = json.loads((tmp_path / "out" / "s0" / "generation.json").read_text())
    assert generation["config"]["placements"]["diffusion_decoder"] == "stream"
