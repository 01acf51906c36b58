"""EDM denoiser with classifier-free guidance and the reference's "2ab" multistep sampler.

Follows ``diff/diffusion/modules/{denoiser_scaling,res_sampler}.py`` and ``functional/{multi_step,
runge_kutta}.py`` (spec section 1), including where precision changes: the solver state and its
coefficients are float64, while the state and sigma are rounded to the network dtype at every network
call, and scaling, x0 and the guidance combination are computed in that dtype (bf16 in production).
The conditional and unconditional predictions run as one batch of two; every operation is per sample,
so this equals the reference's two separate calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cosmos_cli.models.diffusion_decoder.dit import DiffusionDecoderDiT


@dataclass(frozen=True)
class SamplerSettings:
    """Defaults: ``DiffusionDecoderSamplingConfig`` and ``EDMSDE`` of the reference."""

    num_steps: int = 15
    guidance: float = 1.8
    sigma_min: float = 0.02
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5

    @property
    def x0_calls(self) -> int:
        """Guided denoiser calls per sample: one per step plus the final clean step."""
        return self.num_steps + 1


def sigma_schedule(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """Karras schedule ``(max^(1/rho) + i/n (min^(1/rho) - max^(1/rho)))^rho``, i = 0..n, float64."""
    i = torch.arange(num_steps + 1, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + i / num_steps * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def edm_scaling(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """``(c_skip, c_out, c_in, c_noise)`` in ``sigma``'s dtype, with the reference's operation order."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    c_in = 1 / (sigma**2 + sigma_data**2) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def _bcast(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``batch_mul``: a per-sample ``[B]`` coefficient against a ``[B, ...]`` tensor."""
    return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))


@dataclass
class DenoiserOutput:
    net_in_x: torch.Tensor
    net_in_timesteps: torch.Tensor
    net_out: torch.Tensor
    x0: torch.Tensor


class GuidedDenoiser:
    """``x0_fn`` of ``LatentDiffusionDecoderModel.get_x0_fn_from_batch`` for a batch of ``B`` windows.

    Each network call carries ``2B`` rows: first the conditions (token indices, T5 context), then the
    unconditional inputs: every token index set to 0 (so ``token_embedder.weight[0]``, not a zero vector)
    and the context zeroed, as the reference's dropout-1.0 uncondition does.
    """

    def __init__(
        self,
        net: DiffusionDecoderDiT,
        tokens: torch.Tensor,
        context: torch.Tensor,
        *,
        guidance: float,
        sigma_data: float,
        fps: float = 24.0,
        padding_mask: torch.Tensor | None = None,
    ):
        if tokens.shape[0] != context.shape[0]:
            raise ValueError(f"{tokens.shape[0]} token grids but {context.shape[0]} contexts")
        self.net = net
        self.batch = tokens.shape[0]
        self.tokens = torch.cat([tokens, torch.zeros_like(tokens)])
        self.context = torch.cat([context, torch.zeros_like(context)])
        self.guidance = guidance
        self.sigma_data = sigma_data
        self.fps = torch.full((2 * self.batch,), fps, dtype=context.dtype, device=context.device)
        self.padding_mask = None if padding_mask is None else padding_mask.repeat(2, 1, 1, 1)

    def predict(self, x: torch.Tensor, sigma: torch.Tensor) -> DenoiserOutput:
        """Rows ``[:B]`` conditional, ``[B:]`` unconditional, for ``x [B, C, T, H, W]`` at ``sigma [B]``."""
        x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])
        c_skip, c_out, c_in, c_noise = edm_scaling(sigma2, self.sigma_data)
        net_in = _bcast(c_in, x2) * x2
        net_out = self.net(net_in, c_noise, self.context, self.tokens, self.padding_mask, self.fps)
        x0 = _bcast(c_skip, x2) * x2 + _bcast(c_out, net_out) * net_out
        return DenoiserOutput(net_in, c_noise, net_out, x0)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x0 = self.predict(x, sigma).x0
        cond, uncond = x0[: self.batch], x0[self.batch :]
        return cond + self.guidance * (cond - uncond)


def _phi1(t: torch.Tensor) -> torch.Tensor:
    return torch.expm1(t) / t


def _phi2(t: torch.Tensor) -> torch.Tensor:
    return (_phi1(t) - 1.0) / t


def _ab2_step(
    x: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    x0_s: torch.Tensor,
    s1: torch.Tensor,
    x0_s1: torch.Tensor,
) -> torch.Tensor:
    """``res_x0_rk2_step``: second-order Adams-Bashforth in log-sigma time (RES, arXiv 2308.02157)."""
    s, t, m = -torch.log(s), -torch.log(t), -torch.log(s1)
    dt = t - s
    c2 = (m - s) / dt
    phi1, phi2 = _phi1(-dt), _phi2(-dt)
    b1 = torch.nan_to_num(phi1 - 1.0 / c2 * phi2, nan=0.0)
    b2 = torch.nan_to_num(1.0 / c2 * phi2, nan=0.0)
    return _bcast(torch.exp(-dt), x) * x + _bcast(dt, x) * (_bcast(b1, x) * x0_s + _bcast(b2, x) * x0_s1)


def sample(
    x0_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_sigma_max: torch.Tensor,
    sigmas: torch.Tensor,
    on_call: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Run the 2ab sampler over ``sigmas`` (float64, decreasing) and the final clean step.

    ``x0_fn`` receives the state and sigma rounded to ``x_sigma_max.dtype``; the returned sample has that
    dtype too (``Sampler.forward``). ``on_call`` is invoked after each guided denoiser call.
    """
    in_dtype = x_sigma_max.dtype
    sigmas = sigmas.to(device=x_sigma_max.device, dtype=torch.float64)
    ones = torch.ones(x_sigma_max.shape[0], device=x_sigma_max.device, dtype=torch.float64)

    def x0_f64(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = x0_fn(x.to(in_dtype), sigma.to(in_dtype)).to(torch.float64)
        if on_call is not None:
            on_call()
        return out

    x = x_sigma_max
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for i in range(len(sigmas) - 1):
        s, t = sigmas[i] * ones, sigmas[i + 1] * ones
        x0 = x0_f64(x, s)
        if previous is None:  # first step: Euler in x0 form
            x = _bcast((s - t) / s, x0) * x0 + _bcast(t / s, x) * x
        else:
            x = _ab2_step(x, t, s, x0, previous[1], previous[0])
        previous = (x0, s)
    x = x0_f64(x, sigmas[-1] * ones)
    return x.to(in_dtype)
