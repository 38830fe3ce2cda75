"""The learned reverse step p_θ(x_{t-1} | x_t) = N(μ_θ(x_t, t), σ_t² I).

The network predicts ε, x_0 or v; :func:`p_mean_variance` turns that into x̂_0 and puts it
into the posterior mean μ̃_t(x_t, x̂_0). The variance σ_t² is fixed, not learned: β̃_t or β_t.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import torch
from torch import Tensor

from .posterior import q_posterior
from .schedules import Schedule, check_timesteps, extract
from .targets import Target, split_prediction

Model = Callable[[Tensor, Tensor], Tensor]
Variance = Literal["beta_tilde", "beta"]
VARIANCES = ("beta_tilde", "beta")


class ReverseStep(NamedTuple):
    """p_θ(x_{t-1} | x_t) and the predictions it was built from."""

    mean: Tensor  # μ_θ(x_t, t), shape of x_t
    variance: Tensor  # σ_t², broadcastable (B, 1, …, 1)
    log_variance: Tensor  # log σ_t²
    x0: Tensor  # x̂_0
    eps: Tensor  # ε̂


def reverse_variance(schedule: Schedule, t: Tensor, x: Tensor, variance: Variance) -> tuple[Tensor, Tensor]:
    """σ_t² and log σ_t² for the two choices of Ho et al. Sec. 3.2.

    ``"beta_tilde"``: σ_t² = β̃_t, optimal when x_0 is a single point; its log is clipped at the
    first step (see :func:`ddpm_utils.posterior.q_posterior`). ``"beta"``: σ_t² = β_t, optimal
    when x_0 ~ N(0, I). Book Eq. (reverse-variance).
    """
    if variance == "beta_tilde":
        return extract(schedule.posterior_variance, t, x), extract(schedule.posterior_log_variance_clipped, t, x)
    if variance == "beta":
        return extract(schedule.betas, t, x), extract(torch.log(schedule.betas), t, x)
    raise ValueError(f"unknown reverse variance {variance!r}; expected one of {VARIANCES}")


def interpolated_log_variance(schedule: Schedule, t: Tensor, v: Tensor) -> Tensor:
    """log σ_t² interpolated between the two fixed choices, as Nichol & Dhariwal learn it.

    Math: log σ_t² = v log β_t + (1 - v) log β̃_t — book Eq. (learned-variance), Nichol & Dhariwal
    Eq. 15. ``v`` has the shape of the data (a network outputs one v per coordinate) or broadcasts
    to it; v = 1 gives β_t, v = 0 the clipped β̃_t. improved-diffusion calls this
    ``ModelVarType.LEARNED_RANGE``; diffusers ``variance_type="learned_range"``.
    """
    check_timesteps(schedule, t, v if v.ndim else None)
    log_beta = extract(torch.log(schedule.betas), t, v)
    log_beta_tilde = extract(schedule.posterior_log_variance_clipped, t, v)
    return v * log_beta + (1 - v) * log_beta_tilde


def p_mean_variance(
    model: Model,
    schedule: Schedule,
    xt: Tensor,
    t: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
) -> ReverseStep:
    """One reverse step's Gaussian: μ_θ = μ̃_t(x_t, x̂_0), σ_t² fixed.

    Math: μ_θ(x_t, t) = 1/√α_t · (x_t - β_t/√(1-ᾱ_t) · ε_θ(x_t, t)) — book Eq. (reverse-mean-eps),
    Ho et al. Eq. 11. It is computed as the posterior mean at x̂_0, which is the same number
    and also covers the x_0 and v targets and a clipped x̂_0.
    """
    check_timesteps(schedule, t, xt)
    pred = split_prediction(schedule, xt, t, model(xt, t), target, clip_x0)
    mean = q_posterior(schedule, pred.x0, xt, t).mean
    var, log_var = reverse_variance(schedule, t, xt, variance)
    return ReverseStep(mean, var, log_var, pred.x0, pred.eps)
