"""SCD samples exactly the model's distribution: enumeration against tens of thousands of SCD samples.

A tiny Video2World-shaped model (vocabulary 5, one token per (h, w), two per latent frame) continues a
3-token prompt by 5 tokens. Every one of the 5**5 continuations gets its exact probability from one
forward pass (the product of the warped conditionals sequential decoding would sample from); SCD is run
as one batch of many seeds, and a chi-square test compares the counts with the enumeration. The same
test must reject deliberately broken decoders, which shows that it has the power to catch such bugs.
"""

from __future__ import annotations

import math

import pytest
import torch

from cosmos_cli.decode import rng
from cosmos_cli.decode.drafts import PreviousFrameDraft
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.decode.speculative import (
    KEY_STRIDE,
    STREAM_ACCEPT,
    STREAM_RESIDUAL,
    SpeculativeGenerator,
    residual_sample,
    target_probs,
)
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import ModelArgs

ARGS = ModelArgs(
    name="scd-exactness",
    dim=32,
    n_layers=2,
    n_heads=2,
    n_kv_heads=1,
    head_dim=16,
    ffn_hidden_size=64,
    context_dim=8,
    context_len=4,
    fsq_levels=(5,),
    latent_shape=(4, 1, 2),
    pad_to_multiple_of=8,
)
VOCAB = ARGS.video_vocab_size
PROMPT = torch.tensor([[ARGS.bov_token, 2, 4]])  # <bov> and the first latent frame
LENGTH = 5
SAMPLES = 20_000
P_MIN = 1e-3
"""Correct decoders must pass at this level (seeds are fixed, so the outcome is deterministic)."""
P_BROKEN = 1e-6
"""Broken decoders must be rejected at this level."""


@pytest.fixture(scope="module")
def tiny():
    """A random model with strong context dependence: larger weights than the benchmark's N(0, 0.02)."""
    model = build_model(ARGS, weights=None, dtype=torch.float32, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.endswith("norm.weight"):
                param.copy_(torch.randn(param.shape, generator=gen) * 1.5 / math.sqrt(param.shape[-1]))
    context = torch.randn(1, ARGS.context_len, ARGS.context_dim, generator=gen)
    return model, context


def exact_probabilities(model, context, params: SamplingParams) -> torch.Tensor:
    """Probability of every continuation (index = base-V number of its tokens), from the warped conditionals."""
    seqs = torch.cartesian_prod(*[torch.arange(VOCAB)] * LENGTH)
    full = torch.cat([PROMPT.expand(len(seqs), -1), seqs], dim=1)
    model.free_caches()
    model.setup_caches(len(seqs), torch.float32, torch.device("cpu"))
    model.set_context(context.expand(len(seqs), -1, -1))
    with torch.no_grad():
        logits = model(full, torch.arange(full.shape[1]), prefill=True)
    model.free_caches()
    p = target_probs(logits[:, PROMPT.shape[1] - 1 : -1], params)
    return p.gather(-1, seqs[..., None])[..., 0].prod(-1).double()


def scd_counts(model, context, params, window, draft, cls=SpeculativeGenerator, seed0=0):
    gen = cls(model, window=window, draft=draft)
    tokens = gen.generate(
        PROMPT.expand(SAMPLES, -1),
        LENGTH,
        params,
        torch.arange(SAMPLES) + seed0,
        context=context.expand(SAMPLES, -1, -1),
    )
    index = (tokens * VOCAB ** torch.arange(LENGTH - 1, -1, -1)).sum(1)
    return torch.bincount(index, minlength=VOCAB**LENGTH), gen.stats


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson chi-square p-value of counts against probabilities; cells expecting < 5 are pooled.

    Returns the p-value and the number of samples that fell on probability-zero sequences (any such
    sample already proves the decoder wrong).
    """
    expected = probs * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().double()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    if exp[-1] < 5:  # too little pooled mass to stand alone: fold it into the last cell
        obs, exp = obs[:-2].tolist() + [obs[-2:].sum().item()], exp[:-2].tolist() + [exp[-2:].sum().item()]
        obs, exp = torch.tensor(obs, dtype=torch.float64), torch.tensor(exp, dtype=torch.float64)
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = torch.tensor((len(exp) - 1) / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, stat / 2)), int(counts[probs == 0].sum())


@pytest.fixture(scope="module")
def exact(tiny):
    model, context = tiny
    return {top_p: exact_probabilities(model, context, SamplingParams(1.0, top_p)) for top_p in (1.0, 0.7)}


@pytest.mark.parametrize("draft", ["uniform", "prev-frame"])
@pytest.mark.parametrize("top_p", [1.0, 0.7])
@pytest.mark.parametrize("window", [2, 3, 8])
def test_scd_samples_the_model_distribution(tiny, exact, window, top_p, draft):
    model, context = tiny
    counts, stats = scd_counts(model, context, SamplingParams(1.0, top_p), window, draft, seed0=window * SAMPLES)
    pvalue, impossible = chi_square_pvalue(counts, exact[top_p])
    assert impossible == 0
    assert pvalue > P_MIN, f"chi-square p={pvalue:.2e}"
    assert stats.tokens_per_forward > 1.0  # speculation did commit several tokens per pass


def test_exact_probabilities_sum_to_one_and_top_p_prunes(exact):
    assert exact[1.0].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert exact[0.7].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (exact[1.0] > 0).all() and 0 < int((exact[0.7] > 0).sum()) < VOCAB**LENGTH // 4


# ---- broken decoders: the test must reject each ----------------------------------------------------------
class ReusedAcceptanceNoise(SpeculativeGenerator):
    """Bug: the acceptance uniform of a position is the same in every iteration (no iteration in the key)."""

    def _noise(self, positions):
        s = self.state
        seeds = s.seeds[:, None].expand_as(positions)
        u = rng.uniform(seeds, positions, 1, STREAM_ACCEPT)[..., 0]
        key = s.iteration * KEY_STRIDE + positions
        return u, rng.exponential(seeds, key, self.vocab, STREAM_RESIDUAL)


class UnwarpedRatio(SpeculativeGenerator):
    """Bug: the acceptance ratio uses softmax(logits / T) without top-p; the residual is still warped."""

    def _verify(self, logits, targets, params):
        s = self.state
        p = target_probs(logits, params)
        unwarped = torch.softmax(logits / params.temperature, dim=-1)
        u, race = self._noise(targets)
        index = s.draft[..., None]
        kept = u * s.q.gather(-1, index)[..., 0] < unwarped.gather(-1, index)[..., 0]
        return p, kept, torch.where(kept, s.draft, residual_sample(p, s.q, race))


class MislabelledPreviousFrame(PreviousFrameDraft):
    """Bug: copies the previous frame's token but records it as a uniform random draw."""

    def propose(self, seq, positions, known_end, seeds, key):
        tokens, q = super().propose(seq, positions, known_end, seeds, key)
        return tokens, torch.full_like(q, 1.0 / self.vocab_size)


@pytest.mark.parametrize(
    "cls, draft, top_p",
    [
        (ReusedAcceptanceNoise, "prev-frame", 1.0),
        (UnwarpedRatio, "uniform", 0.7),
        (SpeculativeGenerator, "mislabelled", 1.0),
    ],
    ids=["reused-acceptance-noise", "unwarped-ratio", "wrong-proposal-distribution"],
)
def test_broken_variants_fail_the_same_test(tiny, exact, cls, draft, top_p):
    model, context = tiny
    if draft == "mislabelled":
        draft = MislabelledPreviousFrame(VOCAB, ARGS.tokens_per_frame, 1)
    counts, _ = scd_counts(model, context, SamplingParams(1.0, top_p), 3, draft, cls=cls, seed0=7 * SAMPLES)
    pvalue, _ = chi_square_pvalue(counts, exact[top_p])
    assert pvalue < P_BROKEN, f"the broken decoder passed (p={pvalue:.2e}): the test has no power"
