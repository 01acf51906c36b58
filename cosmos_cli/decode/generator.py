"""The prefill + decode loop, with the fast path (compiled step captured in one CUDA graph) as an option.

gpt-fast's shape, kept as an object: the model stays a plain module; this class owns the static decode
state (current token, position, seeds, output buffer: all device tensors), one step function that reads
and advances that state with no host sync, and optionally its compiled / CUDA-graph form. The eager
step and the graph replay run the very same function, so CPU tests exercise the GPU code path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cosmos_cli.decode.sampling import SamplingParams, sample
from cosmos_cli.models.ar.transformer import Transformer

ProgressFn = Callable[[int], None]


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


class ARGenerator:
    """Generates video tokens for a batch of prompts that share one prompt length."""

    def __init__(self, model: Transformer, *, compile: bool = False, cuda_graph: bool | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.compile = compile
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self._graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._compiled: Callable | None = None
        self.stats = GenerationStats()

    # ---- static state -------------------------------------------------------------------------
    def _allocate(self, batch: int, prompt_len: int, num_new: int, seeds: torch.Tensor) -> None:
        """Static decode state, reused across calls of the same shape so captured graphs stay valid."""
        dev = self.device
        self.prompt_len = prompt_len
        if getattr(self, "out", None) is None or self.out.shape != (batch, num_new):
            self.cur_tok = torch.zeros(batch, 1, dtype=torch.long, device=dev)
            self.cur_pos = torch.zeros(1, dtype=torch.long, device=dev)
            self.seeds = torch.zeros(batch, dtype=torch.long, device=dev)
            self.out = torch.zeros(batch, num_new, dtype=torch.long, device=dev)
        self.seeds.copy_(seeds.to(dev, torch.long))

    def _buffers_key(self) -> tuple:
        """Addresses of every tensor a captured graph reads or writes: the graph is valid only for these."""
        tensors = [self.cur_tok, self.cur_pos, self.seeds, self.out]
        for layer in self.model.layers:
            cache = layer.attention.kv_cache
            tensors += [cache.k, cache.v] if cache is not None else []
            tensors += [t for t in (layer.context_k, layer.context_v) if t is not None]
        return tuple((t.data_ptr(), tuple(t.shape)) for t in tensors) + (self.prompt_len,)

    def _step(self, params: SamplingParams) -> None:
        """One decode step on the static state: logits at ``cur_pos``, sample ``cur_pos + 1``, advance."""
        logits = self.model(self.cur_tok, self.cur_pos)[:, -1]
        next_pos = self.cur_pos + 1
        nxt = sample(logits, params, self.seeds, next_pos.expand(self.seeds.shape[0]))
        self.out.index_copy_(1, next_pos - self.prompt_len, nxt[:, None])
        self.cur_tok.copy_(nxt[:, None])
        self.cur_pos.copy_(next_pos)

    def _step_fn(self) -> Callable[[SamplingParams], None]:
        if not self.compile:
            return self._step
        if self._compiled is None:
            self._compiled = torch.compile(self._step, fullgraph=True, dynamic=False)
        return self._compiled

    def _replay_fn(self, params: SamplingParams) -> Callable[[], None]:
        """The step as a zero-argument callable: a CUDA graph replay, or a plain call."""
        step = self._step_fn()
        if not self.cuda_graph:
            return lambda: step(params)
        key = (self._buffers_key(), params, self.compile)
        if key not in self._graphs:
            self._graphs.clear()  # graphs of reallocated buffers must never replay
            saved_tok, saved_pos, saved_out = self.cur_tok.clone(), self.cur_pos.clone(), self.out.clone()
            t0 = time.perf_counter()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up: compiles, autotunes, and fills allocator pools
                    step(params)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step(params)
            torch.cuda.synchronize()
            self.stats.warmup_s += time.perf_counter() - t0
            self._graphs[key] = graph
            # Warm-up wrote past the current position; those slots are masked and rewritten before use.
            self.cur_tok.copy_(saved_tok)
            self.cur_pos.copy_(saved_pos)
            self.out.copy_(saved_out)
        return self._graphs[key].replay

    # ---- public -------------------------------------------------------------------------------
    def release_graphs(self) -> None:
        """Forget captured graphs: call after the model's weights moved (graphs hold their addresses).

        The compiled step is kept: it does not depend on addresses, so re-capturing costs a few warm-up
        steps, not a recompilation.
        """
        self._graphs.clear()

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
        sync_every: int = 128,
    ) -> torch.Tensor:
        """Return ``num_new`` tokens (B, num_new) that follow ``prompt`` (B, P)."""
        batch, prompt_len = prompt.shape
        if prompt_len + num_new > self.model.args.max_seq_len:
            raise ValueError(f"{prompt_len} + {num_new} tokens exceed max_seq_len {self.model.args.max_seq_len}")
        self.model.setup_caches(batch, self.dtype, self.device)
        self.model.bind_context(None if context is None else context.to(self.device, self.dtype), batch)
        self._allocate(batch, prompt_len, num_new, seeds)
        self.stats = GenerationStats(warmup_s=self.stats.warmup_s if self._graphs else 0.0)

        t0 = _now(self.device)
        prompt = prompt.to(self.device)
        logits = self.model(prompt, torch.arange(prompt_len, device=self.device), prefill=True, last_only=True)
        pos = torch.full((batch,), prompt_len, dtype=torch.long, device=self.device)
        first = sample(logits[:, -1], params, self.seeds, pos)
        self.out[:, 0] = first
        self.cur_tok.copy_(first[:, None])
        self.cur_pos.fill_(prompt_len)
        self.stats.prefill_s = _now(self.device) - t0
        if on_prefill_done:
            on_prefill_done()
        if on_progress:
            on_progress(1)

        run_step = self._replay_fn(params) if num_new > 1 else None
        t1 = _now(self.device)
        pending = 0
        for i in range(1, num_new):
            run_step()
            pending += 1
            if pending == sync_every or i == num_new - 1:
                if self.device.type == "cuda":
                    torch.cuda.current_stream().synchronize()  # keep the progress bar honest
                if on_progress:
                    on_progress(pending)
                pending = 0
        self.stats.decode_s = _now(self.device) - t1
        self.stats.num_tokens = num_new
        return self.out.clone()


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
