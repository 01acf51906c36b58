"""What every token generator shares: the interface the AR stage types against, and CUDA-graph capture.

Both decoders (:class:`~cosmos_cli.decode.generator.ARGenerator`, one token per step, and
:class:`~cosmos_cli.decode.speculative.SpeculativeGenerator`, K tokens verified per pass) reduce decoding
to one fixed-shape function of static device tensors, run many times. :class:`GraphedDecoder` owns what
follows from that: the step compiled once, its CUDA graph captured per set of buffer addresses (warm-up on
a side stream, capture, then the state restored because warm-up advanced it), and the prefill set-up.
:class:`TokenGenerator` is the contract the AR stage relies on, whichever decoder it holds.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.models.ar.transformer import Transformer

ProgressFn = Callable[[int], None]
WARMUP_STEPS = 3
"""Steps run on a side stream before capture: compile, autotune, and fill the allocator's pools."""
COMPILE_OPTIONS: dict[str, object] = {"triton.cooperative_reductions": True}
"""Inductor options for the compiled step on CUDA. The step's own kernels (norms, softmax, top-p, the sampling
race) are inductor's; at batch 1 their 64,000-wide reductions ran as one program each, and cooperative
reductions spread them over several: int8 B=1 2.497 -> 2.454 ms/step on an H100 (docs/benchmarks.md)."""


@dataclass
class GenerationStats:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    warmup_s: float = 0.0
    num_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ms_per_token(self) -> float:
        return 1000 * self.decode_s / max(self.num_tokens - 1, 1)


class TokenGenerator(Protocol):
    """A decoder of video tokens: what :class:`~cosmos_cli.stages.ar_model.ARModelStage` calls."""

    cuda_graph: bool
    """Whether decode steps replay a captured CUDA graph (the first call then captures it)."""
    stats: GenerationStats

    def generate(
        self,
        prompt: torch.Tensor,
        num_new: int,
        params: SamplingParams,
        seeds: torch.Tensor,
        context: torch.Tensor | None = None,
        on_prefill_done: Callable[[], None] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """``num_new`` tokens (B, num_new) that follow ``prompt`` (B, P), sample ``b`` seeded by ``seeds[b]``."""
        ...

    def release_graphs(self) -> None:
        """Forget captured graphs: call after the model's weights moved (graphs hold their addresses)."""
        ...


class GraphedDecoder(abc.ABC):
    """Base of the decoders: the compiled step, its captured CUDA graphs, and the prefill set-up."""

    stats: GenerationStats

    def __init__(self, model: Transformer, *, compile: bool = False, cuda_graph: bool | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.compile = compile
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self._graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._compiled: Callable | None = None

    @abc.abstractmethod
    def _state_tensors(self) -> list[torch.Tensor]:
        """The static decode state one step reads and writes (saved around warm-up, part of graph keys)."""

    def _compiled_step(self, step: Callable) -> Callable:
        """``step`` itself, or (``compile``) its compiled form, built once and kept across graph captures."""
        if not self.compile:
            return step
        if self._compiled is None:
            on_cuda = next(self.model.parameters()).is_cuda
            options = dict(COMPILE_OPTIONS) if on_cuda else None
            self._compiled = torch.compile(step, fullgraph=True, dynamic=False, options=options)
        return self._compiled

    def _model_buffers(self) -> list[torch.Tensor]:
        """Every KV cache and cross-attention context K/V: a captured graph reads them by address."""
        tensors = []
        for layer in self.model.layers:
            cache = layer.attention.kv_cache
            tensors += [cache.k, cache.v] if cache is not None else []
            tensors += [t for t in (layer.context_k, layer.context_v) if t is not None]
        return tensors

    @staticmethod
    def _addresses(tensors: list[torch.Tensor]) -> tuple:
        return tuple((t.data_ptr(), tuple(t.shape)) for t in tensors)

    def _replay(self, key: tuple, run: Callable[[], None]) -> Callable[[], None]:
        """``run`` as a CUDA graph replay, captured on first use of ``key`` (which must name every address)."""
        if key not in self._graphs:
            self._graphs[key] = self._capture(run)
        return self._graphs[key].replay

    def _capture(self, run: Callable[[], None]) -> torch.cuda.CUDAGraph:
        saved = [t.clone() for t in self._state_tensors()]
        t0 = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        torch.cuda.synchronize()
        self.stats.warmup_s += time.perf_counter() - t0
        # Warm-up wrote cache slots at or past the current position: masked, and rewritten before use.
        for tensor, value in zip(self._state_tensors(), saved, strict=True):
            tensor.copy_(value)
        return graph

    def release_graphs(self) -> None:
        """Forget captured graphs: call after the model's weights moved (graphs hold their addresses).

        The compiled step is kept: it does not depend on addresses, so re-capturing costs a few warm-up
        steps, not a recompilation.
        """
        self._graphs.clear()

    def _setup(self, prompt: torch.Tensor, num_new: int, context: torch.Tensor | None) -> None:
        """Check the length, allocate the KV caches and bind the text context for a batch of ``prompt``."""
        batch, prompt_len = prompt.shape
        if prompt_len + num_new > self.model.args.max_seq_len:
            raise ValueError(f"{prompt_len} + {num_new} tokens exceed max_seq_len {self.model.args.max_seq_len}")
        self.model.setup_caches(batch, self.dtype, self.device)
        self.model.bind_context(None if context is None else context.to(self.device, self.dtype), batch)


def synced_time(device: torch.device) -> float:
    """``perf_counter`` after the device's queued work finished (so timings measure the GPU, not launches)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
