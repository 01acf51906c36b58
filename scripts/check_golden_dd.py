"""Check our diffusion decoder against a golden set of NVIDIA's reference (``shared/golden-dd/<set>``).

Builds the DiT from the set's ``config.json``, loads ``model.pt`` and compares every output in ``case.pt``
(network outputs, EDM x0s, CFG, intermediates, the sampler run, window split and blend) with the set's
tolerance. Prints one line per output with the max absolute difference; exits 1 if any is out of tolerance.

    .venv/bin/python scripts/check_golden_dd.py ../shared/golden-dd/tiny-dd-shared
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cosmos_cli.models.diffusion_decoder.config import DiTConfig
from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT
from cosmos_cli.models.diffusion_decoder.sampler import GuidedDenoiser, sample, sigma_schedule
from cosmos_cli.models.diffusion_decoder.weights import load_network, load_state_dict_file
from cosmos_cli.models.diffusion_decoder.windows import linear_blend, split_with_overlap


@torch.no_grad()
def compute_outputs(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Our value for every golden output, and the golden case."""
    data = json.loads((folder / "config.json").read_text())
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=True)
    net = DiffusionDecoderDiT(DiTConfig.from_json(data)).eval()
    load_network(net, load_state_dict_file(folder / "model.pt"), source=str(folder / "model.pt"))

    x_t, sigma, tokens = case["x0_noisy"], case["sigma"], case["tokens"]
    fps = float(case["fps"][0])
    denoiser = GuidedDenoiser(
        net,
        tokens,
        case["crossattn_emb"],
        guidance=data["guidance"],
        sigma_data=data["sigma_data"],
        fps=fps,
        padding_mask=case["padding_mask"],
    )
    pred = denoiser.predict(x_t, sigma)
    b = x_t.shape[0]
    ours = {
        "net_in_x": pred.net_in_x[:b],
        "net_in_timesteps": pred.net_in_timesteps[:b],
        "net_out_cond": pred.net_out[:b],
        "net_out_uncond": pred.net_out[b:],
        "x0_cond": pred.x0[:b],
        "x0_uncond": pred.x0[b:],
        "x0_cfg": denoiser(x_t, sigma),
    }
    emb, adaln_lora = net.time_embedding(case["net_in_timesteps"])
    ours["t_emb_B_D"], ours["adaln_lora_B_3D"] = emb, adaln_lora
    ours["x_embed"] = net.embed(case["net_in_x"], tokens, case["padding_mask"])
    _, t, h, w, _ = ours["x_embed"].shape
    ours["rope_emb"] = net.rope_angles(t, h, w, case["fps"])

    sigmas = sigma_schedule(data["num_steps"], data["sigma_min"], data["sigma_max"], rho=7.0)
    ours["sample_sigmas"] = sigmas
    ours["sample_out"] = sample(denoiser, case["sample_noise"], sigmas)

    splits = sorted((k for k in case if k.startswith("split_out_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    chunks = split_with_overlap(case["split_in"], 8, overlap=2)
    if len(chunks) != len(splits):
        raise SystemExit(f"split_with_overlap gave {len(chunks)} windows, golden has {len(splits)}")
    ours.update(zip(splits, chunks, strict=True))
    blends = sorted((k for k in case if k.startswith("blend_in_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    ours["blend_out"] = linear_blend([case[k] for k in blends], 2)
    return ours, case


INPUTS = {
    "x0_noisy",
    "sigma",
    "tokens",
    "crossattn_emb",
    "crossattn_mask",
    "padding_mask",
    "fps",
    "sample_noise",
    "split_in",
}


def compare(ours: dict[str, torch.Tensor], case: dict[str, torch.Tensor], atol: float, rtol: float) -> list[str]:
    """Print one line per golden output; return the names that fail."""
    failures = []
    for name, want in case.items():
        if name in INPUTS or name.startswith("blend_in_"):
            continue
        got = ours.get(name)
        if got is None:
            print(f"FAIL {name:18s} not computed")
        elif got.shape != want.shape:
            print(f"FAIL {name:18s} shape {tuple(got.shape)} != {tuple(want.shape)}")
            got = None
        elif not want.is_floating_point():
            ok = torch.equal(got, want)
            print(f"{'ok  ' if ok else 'FAIL'} {name:18s} {'equal' if ok else 'differs'}")
            got = got if ok else None
        else:
            got = got.to(want.dtype)
            diff = (got - want).abs().max().item() if want.numel() else 0.0
            ok = torch.allclose(got, want, atol=atol, rtol=rtol)
            print(f"{'ok  ' if ok else 'FAIL'} {name:18s} max|diff| {diff:.3e}")
            got = got if ok else None
        if got is None:
            failures.append(name)
    return failures


def check(folder: Path) -> bool:
    tolerance = json.loads((folder / "config.json").read_text())["tolerance"]
    ours, case = compute_outputs(folder)
    print(f"{folder.name}: atol {tolerance['atol']}, rtol {tolerance['rtol']}")
    failures = compare(ours, case, tolerance["atol"], tolerance["rtol"])
    print(f"{folder.name}: {'PASS' if not failures else 'FAIL (' + ', '.join(failures) + ')'}")
    return not failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders", nargs="+", type=Path, help="golden set folder(s) with config.json, model.pt, case.pt"
    )
    args = parser.parse_args(argv)
    sets = []
    for folder in args.folders:  # a folder of sets (../shared/golden-dd) checks each of them
        found = [folder] if (folder / "config.json").exists() else sorted(p.parent for p in folder.glob("*/case.pt"))
        if not found:
            print(f"no golden set (config.json + case.pt) in {folder}", file=sys.stderr)
            return 2
        sets += found
    results = [check(folder) for folder in sets]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
