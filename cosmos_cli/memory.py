"""How much memory is free, and giving freed memory back: one helper each, used by offloading, profiling, serve."""

from __future__ import annotations

import gc

import psutil


def available_host_bytes() -> int:
    """Host memory a new allocation can get without swapping (``MemAvailable``: free + reclaimable)."""
    return int(psutil.virtual_memory().available)


def free_device_memory() -> None:
    """Collect dropped modules and hand cached CUDA blocks back, so the next stage (or job) can use them."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
