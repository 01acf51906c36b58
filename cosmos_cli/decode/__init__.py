"""Token generation: sampling, the prefill/decode loop, and its compiled / CUDA-graph fast path."""
