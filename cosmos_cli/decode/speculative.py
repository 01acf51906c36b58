"""Lossless speculative coupled decoding (SCD, a.k.a. MC-SJD; arXiv 2510.24211) on the static-cache engine.

Sequential decoding reads every weight once per token. SCD keeps a window of K draft tokens for the next
K positions and checks them all in one forward pass: the pass feeds ``[last committed, draft[0..K-2]]``
and so yields the model's distribution ``p[j]`` for each window position ``n + j`` given the prefix
*as drafted*. Each slot is then coupled with its target (:func:`maximal_coupling`): the draft is kept
with probability ``min(1, p(d) / q(d))`` (``q``: the distribution the draft was drawn from), otherwise
replaced by a sample of the residual ``max(0, p - q)``. The result is an exact sample of ``p[j]``. The
leading run of kept drafts plus the first replaced slot are *committed* (at least one token per pass);
the rest of the coupled window becomes the next drafts with ``q = p``, so drafts stop jittering and
converge as the prefix settles (the "coupling" that makes SCD beat plain SJD).

Exactness in one line: whether position ``a`` is committed depends only on the noise of positions
``< a``, and the value committed is the coupled sample, which is distributed as the model's conditional
given the committed prefix because the draft's ``q`` is its true law and the acceptance/residual noise
is fresh (keyed by iteration, position and stream, never reused). ``tests/test_speculative_exact.py``
checks it by enumeration and shows that broken variants fail.

Engineering, so that one iteration is a fixed-shape function of device tensors (a single CUDA graph):

* the static KV cache is not sliced on rejection: the committed length ``n`` lives on the device and the
  cache attention masks keys past each query's own position, so stale slots of rejected drafts are
  invisible and get overwritten by the next pass;
* window positions past the last real position ``L - 1`` are clamped to it: those slots are never
  committed and no real query reads key ``L - 1``, so no spare cache slots are needed;
* commit counts are per sample (batches work), and the loop checks for the end only every so often,
  running just as many iterations as the best case still needs, so it never overshoots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cosmos_cli.decode import rng
from cosmos_cli.decode.base import GenerationStats, GraphedDecoder, ProgressFn, TokenGenerator, synced_time
from cosmos_cli.decode.drafts import DraftProposer, make_draft
from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams, sample, warped_probs
from cosmos_cli.models.ar.transformer import Transformer

STREAM_ACCEPT = 1
STREAM_RESIDUAL = 2
KEY_STRIDE = 1 << 16
"""Noise keys are ``iteration * KEY_STRIDE + position``: unique while both stay below 65536."""
RESIDUAL_EPS = 1e-6
"""Residual mass below this is rounding noise (p ~= q): sample from p instead (the public code's
``+1e-10`` would spread it uniformly over the whole vocabulary, outside the nucleus)."""
TOP_P_METHODS = ("sort", "bisect")
DECODINGS = ("sequential", "scd")


# ---- the coupling rule ---------------------------------------------------------------------------------
def maximal_coupling(
    draft: torch.Tensor, q: torch.Tensor, p: torch.Tensor, u: torch.Tensor, race: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Couple drafts ``d ~ q`` with targets ``p``: (kept (B, K) bool, coupled token (B, K)).

    ``q``, ``p``: (B, K, V) float32; ``u``: (B, K) uniforms; ``race``: (B, K, V) Exp(1) noise for the
    residual sample. The coupled token is ``d`` if ``u * q(d) < p(d)``, else a sample of
    ``max(0, p - q)``; marginally it is distributed as ``p``, and equals ``d`` with probability
    ``1 - TV(p, q)``, the most any coupling allows.
    """
    index = draft[..., None]
    kept = u * q.gather(-1, index)[..., 0] < p.gather(-1, index)[..., 0]
    return kept, torch.where(kept, draft, residual_sample(p, q, race))


def residual_sample(p: torch.Tensor, q: torch.Tensor, race: torch.Tensor) -> torch.Tensor:
    """A sample of ``max(0, p - q)`` (renormalised) per row, by the exponential race; ``p`` if that is ~0."""
    residual = (p - q).clamp_min(0.0)
    residual = torch.where(residual.sum(-1, keepdim=True) > RESIDUAL_EPS, residual, p)
    return (residual / race).argmax(-1)


# ---- target distributions ------------------------------------------------------------------------------
def nucleus_probs_bisect(logits: torch.Tensor, params: SamplingParams, steps: int = 31) -> torch.Tensor:
    """:func:`warped_probs` without a sort: find the top-p threshold by bisection on the float bits.

    The reference keeps a token when the mass of the tokens sorted before it is at most ``top_p``; for
    distinct probabilities that mass is ``g(p_x) = sum of p_y > p_x``, a non-increasing function, so the
    kept set is ``{x : p_x >= t*}`` for the smallest float ``t*`` with ``g(t*) <= top_p``. Non-negative
    floats order like their int32 bit patterns, so 31 halvings of the bit range find ``t*`` exactly, each
    one masked sum over the vocabulary (no (K, V) sort). Ties at the threshold are all kept where the
    sort keeps only the first few; sums are rounded in a different order: differences at the last ulp.
    """
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p >= 1.0:
        return probs
    bits = probs.view(torch.int32)
    lo = torch.full(probs.shape[:-1] + (1,), -1, dtype=torch.int32, device=probs.device)
    hi = bits.amax(-1, keepdim=True)
    for _ in range(steps):
        mid = lo + torch.div(hi - lo, 2, rounding_mode="floor")
        above = torch.where(bits > mid, probs, 0.0).sum(-1, keepdim=True)
        fits = above <= params.top_p
        hi = torch.where(fits, mid, hi)
        lo = torch.where(fits, lo, mid)
    kept = torch.where(bits >= hi, probs, 0.0)
    return kept / kept.sum(-1, keepdim=True)


def target_probs(logits: torch.Tensor, params: SamplingParams, top_p_method: str = "sort") -> torch.Tensor:
    """The distribution sequential sampling draws from (warped, float32); one-hot argmax when greedy."""
    if params.greedy:
        best = logits.argmax(-1, keepdim=True)
        return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, best, 1.0)
    if top_p_method == "bisect":
        return nucleus_probs_bisect(logits, params)
    return warped_probs(logits, params)


# ---- statistics ----------------------------------------------------------------------------------------
@dataclass
class SpeculativeStats(GenerationStats):
    """What SCD did: forward passes per sample, acceptance by window slot and by draft origin."""

    window: int = 0
    draft: str = ""
    forwards: list[int] = field(default_factory=list)
    """Verify passes per sample after the prefill (sequential decoding needs ``num_tokens - 1``)."""
    iterations: int = 0
    """Verify passes run for the batch (the slowest sample's count plus any overrun)."""
    slot_reached: list[int] = field(default_factory=list)
    slot_accepted: list[int] = field(default_factory=list)
    commit_histogram: list[int] = field(default_factory=list)
    """``commit_histogram[m]``: passes that committed ``m`` tokens (summed over the batch)."""
    fresh_reached: int = 0
    fresh_accepted: int = 0
    coupled_reached: int = 0
    coupled_accepted: int = 0

    @property
    def tokens_per_forward(self) -> float:
        """Tokens committed per verify pass (mean over samples; the prefill's token not counted)."""
        if not self.forwards:
            return 0.0
        return sum((self.num_tokens - 1) / max(f, 1) for f in self.forwards) / len(self.forwards)

    @property
    def slot_acceptance(self) -> list[float]:
        """P(draft kept at slot j | every slot before it was kept)."""
        return [a / r if r else float("nan") for a, r in zip(self.slot_accepted, self.slot_reached, strict=True)]

    @property
    def fresh_acceptance(self) -> float:
        """Acceptance of drafts in their first verify pass: how good the draft initialiser is."""
        return self.fresh_accepted / self.fresh_reached if self.fresh_reached else float("nan")

    @property
    def coupled_acceptance(self) -> float:
        """Acceptance of drafts carried over (coupled) from an earlier pass."""
        return self.coupled_accepted / self.coupled_reached if self.coupled_reached else float("nan")

    def summary(self) -> dict:
        return {
            "window": self.window,
            "draft": self.draft,
            "num_tokens": self.num_tokens,
            "forwards": self.forwards,
            "iterations": self.iterations,
            "tokens_per_forward": self.tokens_per_forward,
            "fresh_acceptance": self.fresh_acceptance,
            "coupled_acceptance": self.coupled_acceptance,
            "slot_acceptance": self.slot_acceptance,
            "commit_histogram": self.commit_histogram,
            "prefill_s": self.prefill_s,
            "decode_s": self.decode_s,
            "warmup_s": self.warmup_s,
        }


class _State:
    """Static device tensors of one (batch, length, window) shape, reused so CUDA graphs stay valid."""

    def __init__(self, batch: int, total: int, window: int, vocab: int, device: torch.device):
        long = dict(dtype=torch.long, device=device)
        self.seq = torch.zeros(batch, total + window, **long)  # committed tokens, then window drafts
        self.n = torch.zeros(batch, **long)  # committed length per sample
        self.draft = torch.zeros(batch, window, **long)
        self.q = torch.zeros(batch, window, vocab, dtype=torch.float32, device=device)
        self.fresh = torch.zeros(batch, window, dtype=torch.bool, device=device)
        self.seeds = torch.zeros(batch, **long)
        self.iteration = torch.zeros((), **long)
        self.forwards = torch.zeros(batch, **long)
        self.slot_reached = torch.zeros(window, **long)
        self.slot_accepted = torch.zeros(window, **long)
        self.commits = torch.zeros(window + 1, **long)
        self.origin = torch.zeros(4, **long)  # fresh reached/accepted, coupled reached/accepted

    def tensors(self) -> list[torch.Tensor]:
        return [v for v in vars(self).values() if isinstance(v, torch.Tensor)]


class SpeculativeGenerator(GraphedDecoder):
    """Generates video tokens like :class:`ARGenerator` (same ``generate``), K tokens verified per pass.

    ``window``: K, the number of positions verified per forward pass. ``draft``: the initialiser of new
    window slots (a name from :data:`cosmos_cli.decode.drafts.DRAFT_NAMES` or a :class:`DraftProposer`).
    ``top_p_method``: ``"sort"`` (the sequential sampler's own rule) or ``"bisect"`` (sort-free, see
    :func:`nucleus_probs_bisect`). Greedy decoding (temperature 0) commits exactly the argmax tokens.
    """

    def __init__(
        self,
        model: Transformer,
        *,
        window: int = 32,
        draft: str | DraftProposer = "prev-frame",
        compile: bool = False,
        cuda_graph: bool | None = None,
        top_p_method: str = "sort",
    ):
        if window < 1:
            raise ValueError(f"the speculative window must be at least 1 token, got {window}")
        if top_p_method not in TOP_P_METHODS:
            raise ValueError(f"top_p_method must be one of {TOP_P_METHODS}, got {top_p_method!r}")
        super().__init__(model, compile=compile, cuda_graph=cuda_graph)
        self.window = window
        args = model.args
        self.vocab = args.output_rows
        self.drafts = (
            draft
            if isinstance(draft, DraftProposer)
            else make_draft(draft, self.vocab, args.tokens_per_frame, int(args.has_bov))
        )
        self.top_p_method = top_p_method
        self.state: _State | None = None
        self._state_key: tuple | None = None
        self.stats = SpeculativeStats()

    # ---- one iteration: verify, couple, commit, shift -----------------------------------------------
    def _noise(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Acceptance uniforms (B, K) and residual race noise (B, K, V), fresh for every iteration."""
        s = self.state
        key = s.iteration * KEY_STRIDE + positions
        seeds = s.seeds[:, None].expand_as(key)
        u = rng.uniform(seeds, key, 1, STREAM_ACCEPT)[..., 0]
        return u, rng.exponential(seeds, key, self.vocab, STREAM_RESIDUAL)

    def _verify(
        self, logits: torch.Tensor, targets: torch.Tensor, params: SamplingParams
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target p (B, K, V), kept (B, K) and coupled tokens (B, K) for the window's logits.

        Greedy keeps a draft iff it is the argmax, and commits the argmax otherwise.
        """
        s = self.state
        p = target_probs(logits, params, self.top_p_method)
        if params.greedy:
            best = p.argmax(-1)
            return p, s.draft == best, best
        u, race = self._noise(targets)
        return p, *maximal_coupling(s.draft, s.q, p, u, race)

    def _iterate(self, params: SamplingParams, length: int) -> None:
        """One verify pass on the static state; ``length`` is the final sequence length L."""
        s = self.state
        window = s.draft.shape[1]
        slots = torch.arange(window, device=s.n.device)
        n = s.n
        active = n < length
        targets = n[:, None] + slots  # the positions the window decides
        inputs = torch.cat([s.seq.gather(1, (n - 1)[:, None]), s.draft[:, :-1]], dim=1)
        logits = self.model(inputs, (targets - 1).clamp(max=length - 1))
        p, kept, coupled = self._verify(logits, targets, params)

        leading = torch.cumprod(kept.long(), dim=1).sum(1)  # drafts kept before the first replacement
        commit = torch.minimum((leading + 1).clamp(max=window), length - n)  # 0 once a sample is done
        s.seq.scatter_(1, targets, coupled)  # committed prefix + provisional tail (read by drafts)
        new_n = n + commit

        # Shift the window by the commit count; the coupled tail becomes the next drafts with q = p.
        source = slots + commit[:, None]
        carried = source < window
        source = source.clamp(max=window - 1)
        new_positions = new_n[:, None] + slots
        key = s.iteration * KEY_STRIDE + new_positions
        fresh_tokens, fresh_q = self.drafts.propose(s.seq, new_positions, n + window, s.seeds, key)
        carried_q = p.gather(1, source[..., None].expand(-1, -1, self.vocab))
        s.draft.copy_(torch.where(carried, coupled.gather(1, source), fresh_tokens))
        s.q.copy_(torch.where(carried[..., None], carried_q, fresh_q))

        # Statistics (device-side counters, read once at the end).
        reached = (slots[None] <= leading[:, None]) & (slots[None] < commit[:, None])
        accepted = (slots[None] < leading[:, None]) & (slots[None] < commit[:, None])
        s.slot_reached += reached.long().sum(0)
        s.slot_accepted += accepted.long().sum(0)
        s.commits.scatter_add_(0, commit, active.long())
        fresh = s.fresh
        s.origin += torch.stack(
            [
                (reached & fresh).sum(),
                (accepted & fresh).sum(),
                (reached & ~fresh).sum(),
                (accepted & ~fresh).sum(),
            ]
        )
        s.forwards += active.long()
        s.fresh.copy_(~carried)
        s.n.copy_(new_n)
        s.iteration += 1

    # ---- compile / graph ----------------------------------------------------------------------------
    def _state_tensors(self) -> list[torch.Tensor]:
        return self.state.tensors()

    def _buffers_key(self) -> tuple:
        """Addresses a captured graph depends on besides our state: every KV cache and context K/V."""
        return self._addresses(self._model_buffers())

    def _replay_fn(self, params: SamplingParams, length: int) -> Callable[[], None]:
        """The iteration as a zero-argument callable: a CUDA graph replay, or a plain call."""
        step = self._compiled_step(self._iterate)
        if not self.cuda_graph:
            return lambda: step(params, length)
        key = (self._state_key, length, params, self.compile, self._buffers_key())
        return self._replay(key, lambda: step(params, length))

    # ---- public -------------------------------------------------------------------------------------
    def _reset(self, prompt: torch.Tensor, num_new: int, seeds: torch.Tensor) -> None:
        batch, prompt_len = prompt.shape
        # Tensors made under inference mode cannot be updated outside it (and vice versa for autograd).
        key = (batch, prompt_len + num_new, self.window, self.vocab, torch.is_inference_mode_enabled())
        if self._state_key != key:
            self.state = _State(batch, prompt_len + num_new, self.window, self.vocab, self.device)
            self._state_key = key
            self._graphs.clear()
        for tensor in self.state.tensors():
            tensor.zero_()
        self.state.seq[:, :prompt_len].copy_(prompt)
        self.state.seeds.copy_(seeds.to(self.device, torch.long))

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        num_new: int,
        params: SamplingParams,
        seeds: torch.Tensor,
        context: torch.Tensor | None = None,
        on_prefill_done: Callable[[], None] | None = None,
        on_progress: ProgressFn | None = None,
        sync_every: int = 64,
    ) -> torch.Tensor:
        """Return ``num_new`` tokens (B, num_new) that follow ``prompt`` (B, P), as ARGenerator does.

        The first token is sampled from the prefill exactly as the sequential generator samples it; the
        rest come from verify passes. ``sync_every`` bounds the iterations between host syncs (progress
        and the end check).
        """
        batch, prompt_len = prompt.shape
        length = prompt_len + num_new
        if length <= self.model.args.max_seq_len and length + self.window >= KEY_STRIDE:
            raise ValueError(f"sequences of {length} tokens exceed the noise key range ({KEY_STRIDE})")
        self._setup(prompt, num_new, context)
        prompt = prompt.to(self.device)
        self._reset(prompt, num_new, seeds)
        s = self.state
        self.stats = SpeculativeStats(
            warmup_s=self.stats.warmup_s if self._graphs else 0.0, window=self.window, draft=self.drafts.name
        )

        t0 = synced_time(self.device)
        logits = self.model(prompt, torch.arange(prompt_len, device=self.device), prefill=True, last_only=True)
        first_pos = torch.full((batch,), prompt_len, dtype=torch.long, device=self.device)
        s.seq[:, prompt_len] = sample(logits[:, -1], params, s.seeds, first_pos)
        s.n.fill_(prompt_len + 1)
        self.stats.prefill_s = synced_time(self.device) - t0
        if on_prefill_done:
            on_prefill_done()
        if on_progress:
            on_progress(1)

        if num_new > 1:
            self._init_window()
            run = self._replay_fn(params, length)
            t1 = synced_time(self.device)
            done = 1
            while done < num_new:
                # Even if every draft were kept, the slowest sample needs this many more passes.
                for _ in range(min(sync_every, math.ceil((num_new - done) / self.window))):
                    run()
                committed = int(s.n.min()) - prompt_len
                if on_progress:
                    on_progress(committed - done)
                done = committed
            self.stats.decode_s = synced_time(self.device) - t1
        self.stats.num_tokens = num_new
        self._collect_stats()
        return s.seq[:, prompt_len:length].clone()

    def _init_window(self) -> None:
        """First drafts for positions n .. n+K-1 (nothing past the committed prefix is known yet)."""
        s = self.state
        positions = s.n[:, None] + torch.arange(self.window, device=self.device)
        key = s.iteration * KEY_STRIDE + positions
        tokens, q = self.drafts.propose(s.seq, positions, s.n, s.seeds, key)
        s.draft.copy_(tokens)
        s.q.copy_(q)
        s.fresh.fill_(True)

    def _collect_stats(self) -> None:
        s, st = self.state, self.stats
        st.forwards = s.forwards.tolist()
        st.iterations = int(s.iteration)
        st.slot_reached = s.slot_reached.tolist()
        st.slot_accepted = s.slot_accepted.tolist()
        st.commit_histogram = s.commits.tolist()
        st.fresh_reached, st.fresh_accepted, st.coupled_reached, st.coupled_accepted = s.origin.tolist()


def make_generator(
    model: Transformer,
    decoding: str = "sequential",
    *,
    window: int = 32,
    draft: str = "prev-frame",
    compile: bool = False,
) -> TokenGenerator:
    """The generator for ``--decoding`` (one of :data:`DECODINGS`); both have the same ``generate``."""
    if decoding == "sequential":
        return ARGenerator(model, compile=compile)
    if decoding == "scd":
        return SpeculativeGenerator(model, window=window, draft=draft, compile=compile)
    raise ValueError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
