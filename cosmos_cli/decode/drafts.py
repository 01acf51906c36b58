"""Draft initialisers for speculative coupled decoding, each with the exact distribution it draws from.

A new window slot needs a first guess (a *draft*) for a position nobody has sampled yet. Any rule is
lossless as long as the decoder is told the distribution ``q`` the draft was really drawn from, given
everything the verify pass conditions on: the acceptance test ``u * q(d) < p(d)`` and the residual
``max(0, p - q)`` then turn the draft into an exact sample of the model's distribution ``p``.

* :class:`UniformDraft`: a uniform random token, ``q`` uniform. (The public SJD/SCD code records a
  one-hot ``q`` for these; that is exact too, since it conditions on the drawn token, but it accepts
  ``|nucleus|`` times less often: ``E[p(d)] = 1/V`` against ``sum_d min(1/V, p(d))``.)
* :class:`PreviousFrameDraft`: the token at the same (h, w) in the previous latent frame, ``q`` one-hot on
  it. The draft is a function of tokens at earlier positions only (committed ones, or the current window
  drafts before it), never of the fresh noise the verify pass uses, so the point mass *is* its
  distribution given the prefix. Video is redundant across frames, so this guess is often right.

Both return dense ``q`` rows ``(B, K, V)``: a coupled window slot carries a full distribution anyway, and
writing K x V floats per iteration costs nothing next to a forward pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from cosmos_cli.decode import rng

STREAM_DRAFT = 3
"""RNG stream of draft proposals (the sequential sampler uses 0; see ``speculative.py`` for 1 and 2)."""


class DraftProposer(ABC):
    """Proposes tokens for window slots and reports the distribution each was drawn from."""

    name: str

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    @abstractmethod
    def propose(
        self,
        seq: torch.Tensor,
        positions: torch.Tensor,
        known_end: torch.Tensor,
        seeds: torch.Tensor,
        key: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Drafts for ``positions`` (B, K): tokens (B, K) int64 and their distributions (B, K, V) float32.

        ``seq`` (B, N) holds a token for every position below ``known_end`` (B,): the committed ones and
        the current window's drafts. ``key`` (B, K) is the noise key (iteration and position) of each
        slot; ``seeds`` (B,) the samples' seeds. Must run on the device without host syncs.
        """

    def _uniform(self, seeds: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        u = rng.uniform(seeds[:, None].expand_as(key), key, 1, STREAM_DRAFT)[..., 0]
        return (u * self.vocab_size).long().clamp_(max=self.vocab_size - 1)


class UniformDraft(DraftProposer):
    """A uniform random token with its true (uniform) distribution."""

    name = "uniform"

    def propose(self, seq, positions, known_end, seeds, key):
        tokens = self._uniform(seeds, key)
        q = torch.full((*tokens.shape, self.vocab_size), 1.0 / self.vocab_size, device=tokens.device)
        return tokens, q


class PreviousFrameDraft(DraftProposer):
    """The token one latent frame earlier (same h, w), one-hot; uniform where there is no earlier frame.

    A slot whose previous-frame position is itself not known yet (possible when the window is longer than
    a frame) looks back whole frames until it reaches a known position.
    """

    name = "prev-frame"

    def __init__(self, vocab_size: int, tokens_per_frame: int, first_video_pos: int):
        super().__init__(vocab_size)
        self.tokens_per_frame = tokens_per_frame
        self.first_video_pos = first_video_pos

    def propose(self, seq, positions, known_end, seeds, key):
        frame = self.tokens_per_frame
        ahead = positions - known_end[:, None] + 1  # > 0 where the position itself is not known
        frames_back = torch.div(ahead.clamp(min=1) + frame - 1, frame, rounding_mode="floor")
        source = positions - frames_back * frame
        has_source = source >= self.first_video_pos
        copied = seq.gather(1, source.clamp(min=0))
        random = self._uniform(seeds, key)
        tokens = torch.where(has_source, copied, random)
        one_hot = torch.zeros(*tokens.shape, self.vocab_size, device=tokens.device)
        one_hot.scatter_(-1, tokens[..., None], 1.0)
        q = torch.where(has_source[..., None], one_hot, 1.0 / self.vocab_size)
        return tokens, q


DRAFT_NAMES = (PreviousFrameDraft.name, UniformDraft.name)


def make_draft(name: str, vocab_size: int, tokens_per_frame: int, first_video_pos: int) -> DraftProposer:
    """The proposer called ``name`` (one of :data:`DRAFT_NAMES`)."""
    if name == UniformDraft.name:
        return UniformDraft(vocab_size)
    if name == PreviousFrameDraft.name:
        return PreviousFrameDraft(vocab_size, tokens_per_frame, first_video_pos)
    raise ValueError(f"unknown draft initialiser {name!r}; choose one of {', '.join(DRAFT_NAMES)}")
