"""How many uploads the server decodes at once.

Checking an upload decodes it (``io.video.load_model_input``): up to 9 frames of at most
``io.video.MAX_SOURCE_PIXELS`` each, about 1 GiB at the cap. Without a bound, a burst of N uploads costs N of
those at once; :class:`CheckSlots` lets ``limit`` decode and queues the rest (they wait, nothing is refused),
and counts how many ran together so ``/readyz`` can show that the bound holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

DEFAULT_UPLOAD_CHECKS = 2


class CheckSlots:
    """An asyncio semaphore of ``limit`` slots that also records how many were ever in use together."""

    def __init__(self, limit: int = DEFAULT_UPLOAD_CHECKS):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.running = 0
        self.peak = 0
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Wait for a free slot, hold it for the body (one event loop: the counters need no lock)."""
        async with self._slots:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                yield
            finally:
                self.running -= 1
