"""The forward (noising) process q: one Markov step, and the closed form q(x_t | x_0).

Shapes: ``x0`` and ``xt`` are ``(B, ...)`` of any rank; ``t`` is a long tensor ``(B,)`` of
code indices (code ``t`` is the paper's ``t + 1``; see :mod:`ddpm_utils.schedules`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .schedules import Schedule, check_timesteps, extract


class Gaussian(NamedTuple):
    """A diagonal Gaussian N(mean, variance I): q(x_t | x_0) here, q(x_{t-1} | x_t, x_0) in :mod:`.posterior`."""

    mean: Tensor  # shape of the data, (B, …)
    variance: Tensor  # broadcastable to the data, (B, 1, …, 1)
    log_variance: Tensor  # its log, the same shape (q_posterior clips it at code index 0)


def _noise_like(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if noise is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if noise.shape != x.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the data has {tuple(x.shape)}")
    return noise


def q_step(
    schedule: Schedule,
    x_prev: Tensor,
    t: Tensor,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One step of the Markov chain: x_t = √(1-β_t) x_{t-1} + √β_t ε.

    Math: q(x_t | x_{t-1}) = N(√(1-β_t) x_{t-1}, β_t I) — book Eq. (forward-step), Ho et al. Eq. 2.
    """
    check_timesteps(schedule, t, x_prev)
    noise = _noise_like(x_prev, noise, generator)
    return extract(schedule.alphas.sqrt(), t, x_prev) * x_prev + extract(schedule.betas.sqrt(), t, x_prev) * noise


def q_mean_variance(schedule: Schedule, x0: Tensor, t: Tensor) -> Gaussian:
    """Mean and variance of q(x_t | x_0).

    Math: q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) — book Eq. (forward-closed-form), Ho et al. Eq. 4.
    """
    check_timesteps(schedule, t, x0)
    variance = extract(schedule.one_minus_alpha_bars, t, x0)
    return Gaussian(extract(schedule.sqrt_alpha_bars, t, x0) * x0, variance, torch.log(variance))


def q_sample(
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Jump straight from x_0 to x_t: x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, ε ~ N(0, I).

    Math: the reparameterised closed form — book Eq. (forward-reparam), Ho et al. Eq. 4.
    Pass ``noise`` (the ε the loss will compare against) or a ``generator`` to draw it.
    """
    check_timesteps(schedule, t, x0)
    noise = _noise_like(x0, noise, generator)
    return extract(schedule.sqrt_alpha_bars, t, x0) * x0 + extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise
