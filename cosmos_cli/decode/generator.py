"""The prefill + decode loop, with the fast path (compiled step captured in one CUDA graph) as an option.

gpt-fast's shape, kept as an object: the model stays a plain module; this class owns the static decode
state (current token, position, seeds, output buffer: all device tensors), one step function that reads
and advances that state with no host sync, and optionally its compiled / CUDA-graph form. The eager
step and the graph replay run the very same function, so CPU tests exercise the GPU code path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cosmos_cli.decode.base import GenerationStats, GraphedDecoder, ProgressFn, synced_time
from cosmos_cli.decode.sampling import SamplingParams, sample
from cosmos_cli.models.ar.transformer import Transformer


class ARGenerator(GraphedDecoder):
    """Generates video tokens for a batch of prompts that share one prompt length."""

    def __init__(self, model: Transformer, *, compile: bool = False, cuda_graph: bool | None = None):
        super().__init__(model, compile=compile, cuda_graph=cuda_graph)
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

    def _state_tensors(self) -> list[torch.Tensor]:
        return [self.cur_tok, self.cur_pos, self.seeds, self.out]

    def _buffers_key(self) -> tuple:
        """Addresses of every tensor a captured graph reads or writes: the graph is valid only for these."""
        return self._addresses(self._state_tensors() + self._model_buffers()) + (self.prompt_len,)

    def _step(self, params: SamplingParams) -> None:
        """One decode step on the static state: logits at ``cur_pos``, sample ``cur_pos + 1``, advance."""
        logits = self.model(self.cur_tok, self.cur_pos)[:, -1]
        next_pos = self.cur_pos + 1
        nxt = sample(logits, params, self.seeds, next_pos.expand(self.seeds.shape[0]))
        self.out.index_copy_(1, next_pos - self.prompt_len, nxt[:, None])
        self.cur_tok.copy_(nxt[:, None])
        self.cur_pos.copy_(next_pos)

    def _replay_fn(self, params: SamplingParams) -> Callable[[], None]:
        """The step as a zero-argument callable: a CUDA graph replay, or a plain call."""
        step = self._compiled_step(self._step)
        if not self.cuda_graph:
            return lambda: step(params)
        key = (self._buffers_key(), params, self.compile)
        if key not in self._graphs:
            self._graphs.clear()  # graphs of reallocated buffers must never replay
        return self._replay(key, lambda: step(params))

    # ---- public -------------------------------------------------------------------------------
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
        self._setup(prompt, num_new, context)
        self._allocate(batch, prompt_len, num_new, seeds)
        self.stats = GenerationStats(warmup_s=self.stats.warmup_s if self._graphs else 0.0)

        t0 = synced_time(self.device)
        prompt = prompt.to(self.device)
        logits = self.model(prompt, torch.arange(prompt_len, device=self.device), prefill=True, last_only=True)
        pos = torch.full((batch,), prompt_len, dtype=torch.long, device=self.device)
        first = sample(logits[:, -1], params, self.seeds, pos)
        self.out[:, 0] = first
        self.cur_tok.copy_(first[:, None])
        self.cur_pos.fill_(prompt_len)
        self.stats.prefill_s = synced_time(self.device) - t0
        if on_prefill_done:
            on_prefill_done()
        if on_progress:
            on_progress(1)

        run_step = self._replay_fn(params) if num_new > 1 else None
        t1 = synced_time(self.device)
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
        self.stats.decode_s = synced_time(self.device) - t1
        self.stats.num_tokens = num_new
        return self.out.clone()
