"""Our AR engine reproduces NVIDIA's outputs on every golden set (float32, CPU, the set's tolerance)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.decode.speculative import SpeculativeGenerator
from cosmos_cli.models.ar.positions import rope_angles
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import ModelArgs, YarnArgs
from scripts.golden_ar import check_golden_set
from tests.conftest import REPO
from tests.golden_sets import GOLDEN_ROOT, golden_folders, golden_params, load_golden

GOLDEN = pytest.mark.parametrize("folder", golden_params())


@GOLDEN
def test_every_golden_output_within_tolerance(folder):
    results = check_golden_set(folder)
    names = {d.name for d in results}
    assert {"prefill_logits", "decode_logits", "greedy_tokens"} <= names
    bad = [f"{folder.name}:{d.name} abs={d.max_abs:.2e}" for d in results if not d.ok]
    assert not bad, bad


def test_check_golden_script_accepts_every_set_and_catches_a_bad_one(tmp_path):
    if not GOLDEN_ROOT.exists():
        pytest.skip(f"{GOLDEN_ROOT} is absent: the shared/ folder next to the repo holds the golden sets")
    folders = golden_folders()
    ok = subprocess.run(
        [sys.executable, "scripts/check_golden.py", str(GOLDEN_ROOT)], cwd=REPO, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all within tolerance" in ok.stdout and "FAIL" not in ok.stdout
    assert all(f"== {folder}" in ok.stdout for folder in folders)
    assert ok.stdout.count("prefill_logits") == len(folders) and "max_abs" in ok.stdout
    # A corrupted golden expectation must be caught: perturb the logits of a copy of a set.
    src = folders[-1]
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "model.pt"):
        (bad / name).symlink_to(src / name)
    case = torch.load(src / "case.pt", weights_only=False)
    case["decode_logits"] = case["decode_logits"] + 1e-2
    torch.save(case, bad / "case.pt")
    out = subprocess.run(
        [sys.executable, "scripts/check_golden.py", str(bad)], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 1 and "FAIL" in out.stdout


def test_yarn_spatial_axes_both_use_the_original_height():
    """Spec 1.4: YaRN rescales the h and the w frequencies alike with ``original_latent_shape[1]`` (40), the
    temporal ones with ``[0]``; ``[2]`` (64) is never read. A wrong axis changes the 13B logits by ~1e-2."""
    yarn = YarnArgs(original_latent_shape=(3, 40, 64))
    args = ModelArgs(latent_shape=(5, 40, 64), yarn=yarn)
    same_w = ModelArgs(latent_shape=(5, 40, 64), yarn=YarnArgs(original_latent_shape=(3, 40, 999)))
    assert torch.equal(rope_angles(args), rope_angles(same_w))
    angles = rope_angles(args)[1:]  # after <bov>
    dim_t, dim_s = 44, 42
    h_part = angles[:, dim_t // 2 : dim_t // 2 + dim_s // 2]
    w_part = angles[:, dim_t // 2 + dim_s // 2 : (dim_t + 2 * dim_s) // 2]
    # token (t=0, h=1, w=0) and token (t=0, h=0, w=1) rotate by the same frequencies on their own axis.
    assert torch.equal(h_part[64], w_part[1])
    plain = rope_angles(ModelArgs(latent_shape=(5, 40, 64)))[1:]
    assert not torch.equal(angles, plain)  # YaRN did change the low frequencies


def _sample(golden, seed: int, n: int = 24, batch: int | None = None, seeds=None):
    prompt, context = golden.inputs(batch)
    seeds = torch.tensor([seed]) if seeds is None else torch.tensor(seeds)
    return ARGenerator(golden.model).generate(prompt, n, SamplingParams(1.0, 0.9), seeds, context=context)


@GOLDEN
def test_same_seed_same_tokens_different_seed_different(folder):
    golden = load_golden(folder)
    a, b, c = _sample(golden, 7), _sample(golden, 7), _sample(golden, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@GOLDEN
def test_sample_does_not_depend_on_batch_company(folder):
    """Counter-based noise: a sample's tokens are the same alone or next to another sample."""
    golden = load_golden(folder)
    alone = _sample(golden, 5)
    pair = _sample(golden, 0, batch=2, seeds=[3, 5])
    assert torch.equal(pair[1:], alone)
    assert not torch.equal(pair[0], pair[1])


@GOLDEN
@pytest.mark.parametrize("decoder", [ARGenerator, SpeculativeGenerator])
def test_decoders_take_a_context_exactly_when_the_model_cross_attends(folder, decoder):
    """Base models (no cross-attention) decode with ``context=None``; a Video2World model without a
    context refuses instead of reading the previous request's, and a context for a base model is refused."""
    golden = load_golden(folder)
    prompt, context = golden.inputs()
    gen = decoder(golden.model)
    params, seeds = SamplingParams(0.0), torch.zeros(1, dtype=torch.long)
    tokens = gen.generate(prompt, 8, params, seeds, context=context)
    assert torch.equal(tokens, golden.case["greedy_tokens"][:, :8])
    if golden.args.cross_attn_every_k_layers:
        assert context is not None and golden.model.cross_attends
        with pytest.raises(ValueError, match="cross-attends"):
            gen.generate(prompt, 8, params, seeds, context=None)
        with pytest.raises(ValueError, match="batch of 2"):
            gen.generate(prompt.repeat(2, 1), 8, params, torch.zeros(2, dtype=torch.long), context=context)
    else:
        assert context is None and not golden.model.cross_attends
        assert golden.case.get("context_mask") is None and not golden.args.has_bov
        with pytest.raises(ValueError, match="no cross-attention"):
            gen.generate(prompt, 8, params, seeds, context=torch.zeros(1, 4, golden.args.context_dim))


@GOLDEN
def test_other_golden_shapes_run_without_code_changes(folder, tmp_path):
    """A set in the golden format with batch 2, one KV head, YaRN and ``_extra_state`` keys, of each family.

    Expected decode logits come from one causal prefill over the whole sequence, a different code path
    from the step-by-step cache decode that ``check_golden_set`` runs, so agreement is not a tautology.
    """
    import json

    config = json.loads((folder / "config.json").read_text())
    config.update(
        name="variant", n_kv_heads=1, batch=2, num_generated=20,
        yarn={"original_latent_shape": [3, 2, 4], "yarn_scale": 2.0, "yarn_beta_fast": 4, "yarn_beta_slow": 1},
    )  # fmt: skip
    args = ModelArgs.from_json(config)
    from cosmos_cli.models.ar.weights import random_state_dict

    state = random_state_dict(args, seed=3)
    state["model.layers.0.attention._extra_state"] = torch.zeros(4)  # the reference's loader drops these
    model = build_model(args, weights=None, dtype=torch.float32, device=torch.device("cpu"))
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if "_extra_state" not in k})
    gen = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, args.video_vocab_size, (2, config["prompt_len"]), generator=gen)
    context = None
    if args.has_bov:
        prompt[:, 0] = args.bov_token
    if args.cross_attn_every_k_layers:
        context = torch.randn(2, config["context_len"], config["context_dim"], generator=gen)
    n = config["num_generated"]
    greedy = ARGenerator(model).generate(prompt, n, SamplingParams(0.0), torch.zeros(2, dtype=torch.long),
                                         context=context)  # fmt: skip
    full = torch.cat([prompt, greedy[:, :-1]], dim=1)
    model.setup_caches(2, torch.float32, torch.device("cpu"))
    model.bind_context(context, 2)
    with torch.no_grad():
        logits = model(full, torch.arange(full.shape[1]), prefill=True)
    p = prompt.shape[1]
    case = {
        "prompt_tokens": prompt,
        "context": context,
        "context_mask": None if context is None else torch.ones(2, config["context_len"]).bool(),
        "prefill_logits": logits[:, :p],
        "greedy_tokens": greedy,
        "decode_logits": logits[:, p:],
        "top_p_cases": [],
    }
    variant = tmp_path / "variant"
    variant.mkdir()
    (variant / "config.json").write_text(json.dumps(config))
    torch.save(state, variant / "model.pt")
    torch.save(case, variant / "case.pt")
    results = {d.name: d for d in check_golden_set(variant)}
    assert all(d.ok for d in results.values()), results
    assert results["decode_logits"].max_abs < 1e-4
