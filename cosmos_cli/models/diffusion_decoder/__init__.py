"""The Cosmos-1.0 7B diffusion decoder: DV8x16x16 token grids -> CV8x8x8 latents -> pixels.

A plain-PyTorch reimplementation of NVIDIA's ``DiffusionDecoderGeneralDIT`` and its EDM sampler, faithful to
``shared/spec/diffusion-decoder.md``: ``config`` (sizes), ``dit`` / ``blocks`` / ``rope`` (the network),
``weights`` (loading ``model.pt``), ``sampler`` (EDM scaling, CFG, the 2ab multistep solver), ``windows``
(8-frame windows and the pixel blend), ``cv_tokenizer`` (the CV8x8x8 ``decoder.jit`` with its latent
statistics) and ``decoder`` (the whole token -> video path).
"""
