"""How lossy a quantized model is: logit error against a reference, per step and over a teacher-forced run.

Used by ``scripts/bench_ar.py`` (5B shape on the GPU, against bf16) and the tests (golden sets on the CPU,
against NVIDIA's float32 logits). Teacher forcing feeds both models the same tokens, so the errors measure
the model, not a divergence of sampled sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def logit_errors(ref: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
    """``ref``, ``q``: logits (..., V) of the same steps. Relative L2 error ``||q - ref|| / ||ref||`` over each
    step's logits (mean and max over steps), mean KL(ref || q) in nats per step, and top-1 agreement."""
    ref = ref.double().reshape(-1, ref.shape[-1])
    q = q.double().reshape(-1, q.shape[-1])
    rel = (q - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-30)
    logp, logq = ref.log_softmax(-1), q.log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return {
        "rel_error": float(rel.mean()),
        "rel_error_max": float(rel.max()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1_agree": float((ref.argmax(-1) == q.argmax(-1)).double().mean()),
        "steps": int(ref.shape[0]),
    }


@torch.no_grad()
def teacher_forced_logits(model, prompt: torch.Tensor, tokens: torch.Tensor, context=None) -> torch.Tensor:
    """Logits (B, 1 + T, V): the prefill's last position, then one decode step per token of ``tokens`` (B, T),
    each fed the given token (not the model's own choice)."""
    batch, prompt_len = prompt.shape
    device = prompt.device
    model.setup_caches(batch, next(model.parameters()).dtype, device)
    if context is not None:
        model.set_context(context)
    out = [model(prompt, torch.arange(prompt_len, device=device), prefill=True, last_only=True)]
    for i in range(tokens.shape[1]):
        pos = torch.tensor([prompt_len + i], device=device)
        out.append(model(tokens[:, i : i + 1], pos))
    return torch.cat(out, dim=1)


@torch.no_grad()
def golden_errors(folder: Path, quantization: str) -> dict[str, dict[str, float]]:
    """A golden set's fp32 model quantized with ``quantization``, on the CPU in float32, against NVIDIA's
    logits: prefill logits (every prompt position) and the decode steps along the golden greedy tokens."""
    from cosmos_cli.models.ar.weights import build_model
    from cosmos_cli.models.config import ModelArgs
    from cosmos_cli.quant.linear import quantize_model

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    args = ModelArgs.from_json(config)
    case = torch.load(folder / "case.pt", map_location="cpu", weights_only=False)
    cpu = torch.device("cpu")
    model = build_model(args, weights=folder / "model.pt", dtype=torch.float32, device=cpu)
    model = quantize_model(model, quantization)
    prompt, context = case["prompt_tokens"], case.get("context")
    ctx = context.float() if context is not None and args.cross_attn_every_k_layers else None
    batch, prompt_len = prompt.shape
    model.setup_caches(batch, torch.float32, cpu)
    if ctx is not None:
        model.set_context(ctx)
    prefill = model(prompt, torch.arange(prompt_len), prefill=True)
    greedy = case["greedy_tokens"]
    steps = [model(greedy[:, i : i + 1], torch.tensor([prompt_len + i])) for i in range(greedy.shape[1] - 1)]
    return {
        "prefill": logit_errors(case["prefill_logits"], prefill),
        "decode": logit_errors(case["decode_logits"], torch.cat(steps, dim=1)),
    }
