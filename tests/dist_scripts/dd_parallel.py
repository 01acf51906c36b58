"""CPU ranks (gloo): the diffusion decoder split by CFG branch and by sequence, against one process.

    python tests/dist_scripts/dd_parallel.py WORLD CFG GOLDEN_DD_DIR TINY_ROOT OUT_DIR

Not under torchrun, the script relaunches itself on WORLD ranks (as ``--gpus N`` does). Every rank runs,
once alone and once as one unit of WORLD ranks with ``CFG`` CFG branches: the golden set's sampler (its
noise, schedule and inputs; where its heads split over the sequence-parallel ranks), the same sizes with 6
heads and random weights (45 tokens: uneven slices on 2 ranks), and the tiny checkpoints' stage on a
two-window video. It writes ``OUT_DIR/rank{r}.json`` with the differences, which
``tests/test_parallel_dd.py`` asserts on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT, init_random_
from cosmos_cli.models.diffusion_decoder.sampler import GuidedDenoiser, sample, sigma_schedule
from cosmos_cli.models.diffusion_decoder.weights import load_network, load_state_dict_file
from cosmos_cli.parallel.dd import DDParallel
from cosmos_cli.parallel.launch import TorchrunEnv, relaunch, torchrun_command
from cosmos_cli.stages.diffusion_decoder import DiffusionDecoderStage


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def golden_phase(folder: Path, parallel: DDParallel) -> dict:
    data = json.loads((folder / "config.json").read_text())
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=True)
    net = DiffusionDecoderDiT(DiTConfig.from_json(data)).eval()
    load_network(net, load_state_dict_file(folder / "model.pt"), source=str(folder / "model.pt"))
    kwargs = dict(guidance=data["guidance"], sigma_data=data["sigma_data"], fps=float(case["fps"][0]))
    kwargs["padding_mask"] = case["padding_mask"]
    alone = GuidedDenoiser(net, case["tokens"], case["crossattn_emb"], **kwargs)
    split = parallel.denoiser(net, case["tokens"], case["crossattn_emb"], **kwargs)
    sigmas = sigma_schedule(data["num_steps"], data["sigma_min"], data["sigma_max"], rho=7.0)
    x_t, sigma = case["x0_noisy"], case["sigma"]
    b = x_t.shape[0]
    pred = split.predict(x_t, sigma)
    ref_sample = sample(alone, case["sample_noise"], sigmas)
    par_sample = sample(split, case["sample_noise"], sigmas)
    return {
        "atol": data["tolerance"]["atol"],
        "rtol": data["tolerance"]["rtol"],
        "x0_cfg_vs_golden": max_diff(split(x_t, sigma), case["x0_cfg"]),
        "net_out_cond_vs_golden": max_diff(pred.net_out[:b], case["net_out_cond"]),
        "net_out_uncond_vs_golden": max_diff(pred.net_out[b:], case["net_out_uncond"]),
        "sample_vs_alone": max_diff(par_sample, ref_sample),
        "sample_vs_golden": max_diff(par_sample, case["sample_out"]),
        "sample_ref_scale": float(case["sample_out"].abs().max()),
        "sample_sum": float(par_sample.double().sum()),
    }


@torch.no_grad()
def uneven_phase(folder: Path, parallel: DDParallel) -> dict:
    """The golden set's sizes with 6 heads and random weights: 45 tokens split unevenly over 2 ranks."""
    data = json.loads((folder / "config.json").read_text())
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=True)
    net = DiffusionDecoderDiT(dataclasses.replace(DiTConfig.from_json(data), num_heads=6)).eval()
    init_random_(net, torch.Generator().manual_seed(3))
    kwargs = dict(guidance=data["guidance"], sigma_data=data["sigma_data"], fps=float(case["fps"][0]))
    alone = GuidedDenoiser(net, case["tokens"], case["crossattn_emb"], **kwargs)
    split = parallel.denoiser(net, case["tokens"], case["crossattn_emb"], **kwargs)
    sigmas = sigma_schedule(data["num_steps"], data["sigma_min"], data["sigma_max"], rho=7.0)
    ref = sample(alone, case["sample_noise"], sigmas)
    return {"uneven_vs_alone": max_diff(sample(split, case["sample_noise"], sigmas), ref),
            "uneven_scale": float(ref.abs().max())}  # fmt: skip


@torch.no_grad()
def stage_phase(tiny_root: Path, parallel: DDParallel) -> dict:
    layout = CheckpointLayout(tiny_root)
    alone = DiffusionDecoderStage(layout, dtype=torch.float32)
    split = DiffusionDecoderStage(layout, dtype=torch.float32, parallel=parallel)
    for stage in (alone, split):
        stage.load(torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    voc = alone.architecture().token_voc
    tokens = torch.randint(0, voc, (1, 11, 4, 6), generator=g)  # two windows: 0 and 6 (reflect-padded)
    context = torch.randn(1, 512, alone.architecture().crossattn_emb_channels, generator=g)
    ref = alone.run(tokens, context, num_frames=81)
    calls = []
    got = split.run(tokens, context, num_frames=81, on_progress=calls.append)
    return {
        "video_vs_alone": max_diff(got, ref),
        "video_shape": list(got.shape),
        "progress_calls": sum(calls),
        "progress_total": split.progress_total(tokens),
        "video_std": float(ref.std()),
    }


def main() -> None:
    world, cfg = int(sys.argv[1]), int(sys.argv[2])
    golden, tiny_root, out_dir = (Path(p) for p in sys.argv[3:6])
    env = TorchrunEnv.from_environ()
    if env is None:
        relaunch(torchrun_command(world, argv=sys.argv[1:], target=[__file__]))
        return
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        parallel = DDParallel.create([list(range(world))], cfg)
        result = {"rank": env.rank, "cfg": parallel.dims.cfg, "sp": parallel.dims.sp}
        if json.loads((golden / "config.json").read_text())["num_heads"] % parallel.dims.sp == 0:
            result.update(golden_phase(golden, parallel))
        result.update(uneven_phase(golden, parallel))
        if 2 % parallel.dims.sp == 0:  # the tiny stage has 2 heads
            result.update(stage_phase(tiny_root, parallel))
    finally:
        dist.destroy_process_group()
    (out_dir / f"rank{env.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
