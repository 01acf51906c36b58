"""SCD decoder behaviour: greedy equals sequential, batching, seeds, statistics, drafts, sort-free top-p."""

from __future__ import annotations

import math

import pytest
import torch

from cosmos_cli.decode.drafts import DRAFT_NAMES, DraftProposer, PreviousFrameDraft, UniformDraft, make_draft
from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams, warped_probs
from cosmos_cli.decode.speculative import (
    SpeculativeGenerator,
    make_generator,
    maximal_coupling,
    nucleus_probs_bisect,
)
from tests.golden_sets import golden_params, load_golden

GREEDY = SamplingParams(temperature=0.0)
TOP_P = SamplingParams(1.0, 0.9)


@pytest.fixture(params=golden_params())
def golden(request):
    """Every golden set, of either family (the base sets decode with ``context=None``)."""
    return load_golden(request.param)


def _scd(golden, params, seeds, window=8, draft="prev-frame", n=None, batch=None):
    prompt, context = golden.inputs(batch)
    gen = SpeculativeGenerator(golden.model, window=window, draft=draft)
    n = n or golden.case["greedy_tokens"].shape[1]
    return gen.generate(prompt, n, params, torch.as_tensor(seeds), context=context), gen


# ---- greedy: exactly the sequential tokens -------------------------------------------------------------
@pytest.mark.parametrize("draft", DRAFT_NAMES)
@pytest.mark.parametrize("window", [1, 2, 5, 32, 100])
def test_greedy_scd_equals_greedy_sequential(golden, window, draft):
    """Windows past the cache's spare slots (32, 100 > 7) are clamped, not an error."""
    tokens, gen = _scd(golden, GREEDY, [0], window, draft)
    assert torch.equal(tokens, golden.case["greedy_tokens"])
    prompt, context = golden.inputs()
    sequential = ARGenerator(golden.model).generate(
        prompt, tokens.shape[1], GREEDY, torch.zeros(1, dtype=torch.long), context=context
    )
    assert torch.equal(tokens, sequential)
    assert gen.stats.forwards[0] <= tokens.shape[1] - 1  # how many fewer depends on the set's tokens


class _Oracle(DraftProposer):
    """Drafts the golden greedy continuation itself: every draft is right, so whole windows commit."""

    name = "oracle"

    def __init__(self, vocab: int, sequence: torch.Tensor):
        super().__init__(vocab)
        self.sequence = sequence

    def propose(self, seq, positions, known_end, seeds, key):
        tokens = self.sequence.gather(1, positions.clamp(max=self.sequence.shape[1] - 1))
        return tokens, torch.nn.functional.one_hot(tokens, self.vocab_size).float()


@pytest.mark.parametrize("window", [2, 5, 100])
def test_greedy_scd_with_right_drafts_commits_whole_windows(golden, window):
    """On every family (base: no <bov>, drafts from position 0) a right draft is accepted in every slot."""
    prompt, context = golden.inputs()
    greedy = golden.case["greedy_tokens"]
    oracle = _Oracle(golden.args.output_rows, torch.cat([prompt, greedy], dim=1))
    gen = SpeculativeGenerator(golden.model, window=window, draft=oracle)
    tokens = gen.generate(prompt, greedy.shape[1], GREEDY, torch.zeros(1, dtype=torch.long), context=context)
    assert torch.equal(tokens, greedy)
    assert gen.stats.forwards[0] == math.ceil((greedy.shape[1] - 1) / window)


def test_greedy_batch_commits_per_sample(golden):
    tokens, gen = _scd(golden, GREEDY, [0, 1, 2], window=16, batch=3)
    assert torch.equal(tokens, golden.case["greedy_tokens"].repeat(3, 1))
    assert gen.stats.forwards == [gen.stats.forwards[0]] * 3


# ---- sampling: seeds, batch company, statistics -------------------------------------------------------------
def test_same_seed_same_tokens_and_independent_of_batch_company(golden):
    alone, _ = _scd(golden, TOP_P, [5], n=40)
    again, _ = _scd(golden, TOP_P, [5], n=40)
    pair, gen = _scd(golden, TOP_P, [3, 5], n=40, batch=2)
    assert torch.equal(alone, again)
    assert torch.equal(pair[1:], alone)
    assert not torch.equal(pair[0], pair[1])
    assert len(gen.stats.forwards) == 2


def test_first_token_is_sampled_like_the_sequential_decoder(golden):
    scd, _ = _scd(golden, TOP_P, [11], n=10)
    prompt, context = golden.inputs()
    sequential = ARGenerator(golden.model).generate(prompt, 10, TOP_P, torch.tensor([11]), context=context)
    assert scd[0, 0] == sequential[0, 0]


def test_generator_reuse_and_statistics(golden):
    gen = SpeculativeGenerator(golden.model, window=6, draft="uniform")
    seen = []
    prompt, context = golden.inputs(batch=2)
    kwargs = dict(context=context, on_progress=seen.append, sync_every=3)
    n = 30
    first = gen.generate(prompt, n, TOP_P, torch.tensor([1, 2]), **kwargs)
    second = gen.generate(prompt, n, TOP_P, torch.tensor([1, 2]), **kwargs)
    assert torch.equal(first, second)
    assert sum(seen) == 2 * n
    st = gen.stats
    hist = st.commit_histogram
    assert len(hist) == 7 and hist[0] == 0
    assert sum(m * c for m, c in enumerate(hist)) == 2 * (n - 1)  # every token after the first committed once
    assert sum(hist) == sum(st.forwards) and max(st.forwards) <= st.iterations
    assert st.fresh_reached + st.coupled_reached == sum(st.slot_reached)
    assert st.slot_reached[0] == sum(st.forwards)  # slot 0 is decided in every pass
    assert all(0.0 <= a <= 1.0 for a in st.slot_acceptance if a == a)
    assert st.tokens_per_forward == pytest.approx(sum((n - 1) / f for f in st.forwards) / 2)
    assert st.summary()["draft"] == "uniform"


def test_bad_arguments(golden):
    model, case = golden.model, golden.case
    with pytest.raises(ValueError, match="window"):
        SpeculativeGenerator(model, window=0)
    with pytest.raises(ValueError, match="top_p_method"):
        SpeculativeGenerator(model, top_p_method="heap")
    with pytest.raises(ValueError, match="draft"):
        SpeculativeGenerator(model, draft="psychic")
    with pytest.raises(ValueError, match="max_seq_len"):
        SpeculativeGenerator(model).generate(case["prompt_tokens"], 1000, TOP_P, torch.tensor([0]))


# ---- the coupling rule ---------------------------------------------------------------------------------
def test_coupling_keeps_drafts_of_an_unchanged_target_and_never_leaves_the_nucleus():
    torch.manual_seed(0)
    vocab, n = 50, 4000
    p = torch.zeros(n, 1, vocab)
    p[..., :3] = torch.tensor([0.5, 0.3, 0.2])
    draft = torch.multinomial(p[:, 0], 1)
    race = torch.empty(n, 1, vocab).exponential_()
    u = torch.rand(n, 1)
    kept, coupled = maximal_coupling(draft, p, p, u, race)
    assert kept.all() and torch.equal(coupled, draft)
    # q = p up to rounding: rejections happen, and a tiny residual must not send tokens outside p's support.
    q = p * (1 + 1e-7 * torch.randn_like(p))
    u = 1 - 1e-8 * torch.rand(n, 1)
    kept, coupled = maximal_coupling(draft, q, p, u, race)
    assert (~kept).any()
    assert (coupled < 3).all()


def test_coupling_replacement_follows_the_residual():
    torch.manual_seed(1)
    n = 200_000
    p = torch.tensor([0.6, 0.3, 0.1, 0.0]).expand(n, 1, 4)
    q = torch.tensor([0.1, 0.1, 0.1, 0.7]).expand(n, 1, 4)
    draft = torch.multinomial(q[:, 0], 1)
    kept, coupled = maximal_coupling(draft, q, p, torch.rand(n, 1), torch.empty(n, 1, 4).exponential_())
    freq = torch.bincount(coupled.flatten(), minlength=4).double() / n
    assert torch.allclose(freq, p[0, 0].double(), atol=4e-3)
    assert kept.double().mean().item() == pytest.approx(0.3, abs=4e-3)  # 1 - TV(p, q)


# ---- sort-free top-p -----------------------------------------------------------------------------------
@pytest.mark.parametrize("top_p, temperature", [(0.7, 1.0), (0.9, 0.8), (0.3, 1.3), (1.0, 1.0), (0.999, 1.0)])
def test_bisect_top_p_matches_the_sort_rule(top_p, temperature):
    torch.manual_seed(2)
    logits = torch.randn(3, 7, 1600) * 3
    params = SamplingParams(temperature, top_p)
    ours, ref = nucleus_probs_bisect(logits, params), warped_probs(logits, params)
    assert torch.equal(ours > 0, ref > 0)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_bisect_top_p_in_the_decoder_gives_the_same_greedy_and_similar_samples(golden):
    gen = SpeculativeGenerator(golden.model, window=8, top_p_method="bisect")
    prompt, context = golden.inputs()
    tokens = gen.generate(prompt, 24, TOP_P, torch.tensor([4]), context=context)
    reference, _ = _scd(golden, TOP_P, [4], n=24)
    assert torch.equal(tokens, reference)


# ---- drafts --------------------------------------------------------------------------------------------
def test_previous_frame_draft_copies_chains_and_falls_back():
    frame, vocab = 3, 10
    drafts = PreviousFrameDraft(vocab, tokens_per_frame=frame, first_video_pos=1)
    seq = torch.tensor([[9, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0]])  # <bov>, then known tokens up to position 7
    positions = torch.tensor([[2, 5, 8, 9, 11]])
    tokens, q = drafts.propose(seq, positions, torch.tensor([8]), torch.tensor([0]), positions)
    # 2: first frame -> random; 5 -> position 2; 8 -> 5; 9 -> 6; 11 is 4 ahead -> two frames back -> 5.
    assert tokens[0, 1:].tolist() == [seq[0, 2], seq[0, 5], seq[0, 6], seq[0, 5]]
    assert torch.equal(q[0, 1:], torch.nn.functional.one_hot(tokens[0, 1:], vocab).float())
    assert torch.allclose(q[0, 0], torch.full((vocab,), 0.1))


def test_uniform_draft_is_uniform_and_keyed():
    drafts = make_draft("uniform", 7, 4, 1)
    assert isinstance(drafts, UniformDraft)
    key = torch.arange(20000)[None]
    tokens, q = drafts.propose(None, key, None, torch.tensor([3]), key)
    counts = torch.bincount(tokens.flatten(), minlength=7).double()
    assert counts.min() > 2600 and counts.max() < 3100
    assert torch.allclose(q.sum(-1), torch.ones(1, 20000))
    again, _ = drafts.propose(None, key, None, torch.tensor([3]), key)
    other, _ = drafts.propose(None, key, None, torch.tensor([4]), key)
    assert torch.equal(tokens, again) and not torch.equal(tokens, other)


def test_make_generator_picks_the_decoder(golden):
    model = golden.model
    assert isinstance(make_generator(model), ARGenerator)
    scd = make_generator(model, "scd", window=4, draft="uniform")
    assert isinstance(scd, SpeculativeGenerator) and scd.window == 4 and scd.drafts.name == "uniform"
    with pytest.raises(ValueError, match="decoding"):
        make_generator(model, "jacobi")
