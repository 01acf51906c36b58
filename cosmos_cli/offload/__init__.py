"""Offloading: where each stage lives between uses, what each placement costs, and measuring it.

``placements`` (gpu / cpu / disk / stream, applied around each stage's use), ``streaming`` (a stage's
repeated blocks brought in one at a time), ``sizes`` (each stage's GPU memory estimated on the meta
device), ``strategies`` (NVIDIA's offloading rows), ``plan`` (the estimate of a placement and the fastest
one that fits a budget), ``profile`` / ``profile_view`` (``offload-profile``: the same rows measured).
"""
