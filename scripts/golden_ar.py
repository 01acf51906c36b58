"""Compare our AR engine with a golden set (``shared/golden/README.md`` format).

A development harness (it drives ``decode/``), kept next to ``scripts/check_golden.py``, which uses it with
the tests; production code never imports it. It returns the measured differences instead of printing,
so callers decide how to report them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams, top_p_keep_mask
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import ModelArgs


@dataclass
class Difference:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


def _compare(name: str, ours: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> Difference:
    if ours.dtype in (torch.bool, torch.long, torch.int64):
        equal = bool(torch.equal(ours, ref))
        return Difference(name, 0.0 if equal else float("inf"), 0.0 if equal else float("inf"), equal)
    diff = (ours.double() - ref.double()).abs()
    rel = diff / ref.double().abs().clamp_min(1e-12)
    ok = bool((diff <= atol + rtol * ref.double().abs()).all())
    return Difference(name, float(diff.max()), float(rel.max()), ok)


@torch.no_grad()
def check_golden_set(folder: Path) -> list[Difference]:
    """Run prefill, per-step decode, greedy generation and the top-p filter against one golden set."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    atol, rtol = config["tolerance"]["atol"], config["tolerance"]["rtol"]
    args = ModelArgs.from_json(config)
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=False)
    cpu = torch.device("cpu")
    model = build_model(args, weights=folder / "model.pt", dtype=torch.float32, device=cpu)
    prompt, context = case["prompt_tokens"], case.get("context")
    context = None if context is None else context.float()  # None for the base family
    batch, prompt_len = prompt.shape
    greedy = case["greedy_tokens"]
    expected = (config["batch"], config["prompt_len"], config["num_generated"])
    if (batch, prompt_len, greedy.shape[1]) != expected:
        raise ValueError(f"{folder}: case.pt holds {(batch, prompt_len, greedy.shape[1])}, config.json {expected}")
    if args.has_bov and not bool((prompt[:, 0] == args.bov_token).all()):
        raise ValueError(f"{folder}: a video2world prompt must start with <bov> {args.bov_token}")
    results = []

    model.setup_caches(batch, torch.float32, cpu)
    model.bind_context(context, batch)
    prefill = model(prompt, torch.arange(prompt_len), prefill=True)
    results.append(_compare("prefill_logits", prefill, case["prefill_logits"], atol, rtol))
    steps = [model(greedy[:, i : i + 1], torch.tensor([prompt_len + i])) for i in range(greedy.shape[1] - 1)]
    if steps:
        decode = torch.cat(steps, dim=1)
        results.append(_compare("decode_logits", decode, case["decode_logits"], atol, rtol))

    generator = ARGenerator(model)
    tokens = generator.generate(
        prompt,
        greedy.shape[1],
        SamplingParams(temperature=0.0),
        torch.zeros(batch, dtype=torch.long),
        context=context,
    )
    results.append(_compare("greedy_tokens", tokens, greedy, atol, rtol))

    for i, case_p in enumerate(case.get("top_p_cases", [])):
        probs = torch.softmax(case_p["logits"].float() / case_p["temperature"], dim=-1)
        kept = top_p_keep_mask(probs, case_p["top_p"])
        results.append(_compare(f"top_p_cases[{i}].kept", kept, case_p["kept"].bool(), atol, rtol))
    return results
