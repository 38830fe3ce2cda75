"""Training losses and the variational bound, in bits per dimension.

The bound of Ho et al. Eq. 5, for a chain of T steps (paper indices):

    L = L_T + Σ_{t=2}^{T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) ‖ N(0, I))                  the prior term
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t))  Gaussian KLs
    L_0     = -log p_θ(x_0 | x_1)                          the discretised decoder

In code indices, the KL for code index t ≥ 1 compares the posterior and the model at code t,
and the decoder uses the model at code index 0. Every function returns per-example values
(shape ``(B,)`` or ``(B, T)``); the caller reduces.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .forward import q_sample
from .posterior import q_posterior
from .reverse import Model, Variance, p_mean_variance, reverse_variance
from .schedules import Schedule, check_timesteps, extract
from .targets import Target, training_target

LN2 = math.log(2.0)


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch: ``(B, ...)`` → ``(B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1) if x.ndim > 1 else x


def l_simple(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    target: Target = "eps",
) -> Tensor:
    """Per-example simplified loss: the mean squared error of the model's prediction.

    Math: L_simple = E_{t, x_0, ε} ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖² — book Eq. (l-simple),
    Ho et al. Eq. 14. With ``target="x0"`` or ``"v"`` the same regression on that target.
    Averaged over the data dimensions, so the value does not depend on the image size.
    """
    xt = q_sample(schedule, x0, t, noise)
    output = model(xt, t)
    if output.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(output.shape)} for input {tuple(x0.shape)}")
    return mean_flat((output - training_target(schedule, target, x0, noise, t)) ** 2)


def kl_weight(schedule: Schedule, t: Tensor, variance: Variance = "beta_tilde") -> Tensor:
    """λ_t = β_t² / (2 σ_t² α_t (1-ᾱ_t)), shape ``(B,)``: the weight of ‖ε - ε_θ‖² in the KL term.

    Math: L_{t-1} = λ_t ‖ε - ε_θ(x_t, t)‖² + C_t (summed over the D dimensions, in nats) — book
    Eq. (kl-weight), Ho et al. Eq. 12. Only λ_t is returned. C_t = D · KL(N(0, β̃_t) ‖ N(0, σ_t²))
    does not depend on ε_θ: it is 0 for ``variance="beta_tilde"``, and for ``"beta"`` (σ_t² = β_t)
    C_t = D/2 · (log(β_t/β̃_t) + β̃_t/β_t - 1) > 0. Defined for code indices t ≥ 1; index 0 is
    the decoder term L_0.
    """
    check_timesteps(schedule, t)
    if t.numel() and int(t.min()) < 1:
        raise ValueError("kl_weight is defined for code indices t >= 1; t = 0 is the decoder term L_0")
    betas_t = schedule.betas[t]  # (B,)
    sigma2, _ = reverse_variance(schedule, t, betas_t, variance)
    return schedule.betas[t] ** 2 / (2 * sigma2 * schedule.alphas[t] * schedule.one_minus_alpha_bars[t])


def normal_kl(mean1: Tensor, log_var1: Tensor, mean2: Tensor, log_var2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, var1) ‖ N(mean2, var2)) in nats.

    Math: ½ (log σ₂²/σ₁² + σ₁²/σ₂² + (μ₁-μ₂)²/σ₂² - 1) — book Eq. (gaussian-kl).
    """
    return 0.5 * (log_var2 - log_var1 + torch.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * torch.exp(-log_var2) - 1.0)


def discretized_gaussian_log_likelihood(x0: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """Elementwise log-probability of 8-bit data under a Gaussian integrated over each bin.

    Data in [-1, 1] on the grid of 256 levels; bin i spans x ± 1/255, and the two outer bins
    extend to ±∞ (Ho et al. Eq. 13). Uses the exact normal CDF in log space, in float64
    (``torch.special.log_ndtr``), so bins many standard deviations from the mean stay accurate.
    """
    if x0.shape != mean.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but the mean has {tuple(mean.shape)}")
    if x0.numel() and (x0.min() < -1.0 - 1e-6 or x0.max() > 1.0 + 1e-6):
        raise ValueError("the discretised decoder expects data scaled to [-1, 1]")
    x, mu = x0.double(), mean.double()
    inv_std = torch.exp(-0.5 * log_var.double())
    upper = inv_std * (x - mu + 1.0 / 255.0)  # standardised bin edges, (B, ...)
    lower = inv_std * (x - mu - 1.0 / 255.0)
    log_ndtr = torch.special.log_ndtr
    # log(Φ(b) - Φ(a)) = log Φ(b) + log(1 - Φ(a)/Φ(b)), with a < b. For a bin above the mean use
    # the mirror image Φ(-lower) - Φ(-upper), so b ≤ 0 whenever the bin lies in a tail and every
    # term stays accurate far out (float32 Φ is 0 beyond about 5.8σ).
    mirror = lower > 0
    a, b = torch.where(mirror, -upper, lower), torch.where(mirror, -lower, upper)
    log_b = log_ndtr(b)
    gap = (-torch.expm1(log_ndtr(a) - log_b)).clamp(min=torch.finfo(torch.float64).tiny)
    log_mid = log_b + torch.log(gap)
    log_first = log_ndtr(upper)  # P(X < -1 + 1/255), the bin of -1
    log_last = log_ndtr(-lower)  # P(X > 1 - 1/255), the bin of +1
    return torch.where(x < -0.999, log_first, torch.where(x > 0.999, log_last, log_mid)).to(x0.dtype)


def prior_bpd(schedule: Schedule, x0: Tensor) -> Tensor:
    """L_T in bits per dimension, per example: KL(q(x_T | x_0) ‖ N(0, I)) / (D ln 2).

    It has no parameters; for the linear schedule at T = 1000 it is about 1e-5 bits/dim.
    Computed in float64: for the cosine schedule ᾱ_T ≈ 2e-9, and float32 would round it to 0.
    """
    x = x0.double()
    t = torch.full((x.shape[0],), schedule.T - 1, device=x.device, dtype=torch.long)
    mean = extract(schedule.sqrt_alpha_bars, t, x) * x
    log_var = torch.log(extract(schedule.one_minus_alpha_bars, t, x))
    zeros = torch.zeros_like(x)
    return (mean_flat(normal_kl(mean, log_var, zeros, zeros)) / LN2).to(x0.dtype)


class VLB(NamedTuple):
    """The variational bound, per example, in bits per dimension."""

    total: Tensor  # (B,) prior + Σ KL terms + decoder: an upper bound on -log₂ p(x_0) / D
    prior: Tensor  # (B,) L_T
    decoder: Tensor  # (B,) L_0 = -log p(x_0 | x_1) / (D ln 2)
    kl: Tensor  # (B, T-1) L_{t-1} for code indices t = 1 … T-1 (column t-1)


def vlb_terms(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
) -> Tensor:
    """Per-example term of the bound at code index ``t``, in bits/dim: KL for t ≥ 1, L_0 for t = 0."""
    xt = q_sample(schedule, x0, t, noise)
    step = p_mean_variance(model, schedule, xt, t, target, variance, clip_x0)
    true = q_posterior(schedule, x0, xt, t)
    kl = mean_flat(normal_kl(true.mean, true.log_variance, step.mean, step.log_variance)) / LN2
    decoder = -mean_flat(discretized_gaussian_log_likelihood(x0, step.mean, step.log_variance)) / LN2
    return torch.where(t == 0, decoder, kl)


@torch.no_grad()
def nll_bits_per_dim(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
    max_batch: int = 1024,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> VLB:
    """Evaluate all T terms of the bound for each example of ``x0`` (8-bit data in [-1, 1]).

    Each term uses one draw of x_t ~ q(x_t | x_0), so the total is an unbiased, single-sample
    estimate of the bound. Timesteps are batched: each model call sees up to ``max_batch``
    inputs (examples × timesteps).
    """
    B, T = x0.shape[0], schedule.T
    per_call = max(1, max_batch // B)
    terms = torch.empty(B, T, device=x0.device, dtype=x0.dtype)
    chunks = range(0, T, per_call)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="bits/dim", unit="chunk")
    for start in chunks:
        ts = torch.arange(start, min(start + per_call, T), device=x0.device)  # (k,)
        k = ts.numel()
        x0_rep = x0.repeat(k, *([1] * (x0.ndim - 1)))  # (k·B, ...): all examples for each t
        t_rep = ts.repeat_interleave(B)  # (k·B,)
        noise = torch.randn(x0_rep.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        values = vlb_terms(model, schedule, x0_rep, t_rep, noise, target, variance, clip_x0)
        terms[:, start : start + k] = values.reshape(k, B).T
    prior = prior_bpd(schedule, x0)
    return VLB(prior + terms.sum(dim=1), prior, terms[:, 0], terms[:, 1:])
