"""Data parallelism over the samples of a batch: which samples each data-parallel group generates.

A pure function, so that every rank computes the same split without talking to the others (no
collective before the first sample starts) and the split is testable without torch.distributed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def shard_samples(samples: Sequence[T], dp_rank: int, dp_size: int) -> list[tuple[int, T]]:
    """The ``(index, sample)`` pairs that data-parallel group ``dp_rank`` of ``dp_size`` generates.

    Strided: sample ``i`` goes to group ``i % dp_size``. Deterministic (depends only on the order of
    ``samples``), disjoint and complete over the groups, and the groups' loads differ by at most one
    sample. The index is the sample's position in the whole batch, so outputs keep the names they
    would have in a single-GPU run.
    """
    if dp_size < 1 or not 0 <= dp_rank < dp_size:
        raise ValueError(f"data-parallel rank {dp_rank} of {dp_size} is out of range")
    return [(i, sample) for i, sample in enumerate(samples) if i % dp_size == dp_rank]
