"""The forward-process posterior q(x_{t-1} | x_t, x_0), the target of every reverse step."""

from __future__ import annotations

from torch import Tensor

from .forward import Gaussian
from .schedules import Schedule, check_timesteps, extract

# q(x_{t-1} | x_t, x_0) = N(mean, variance I) is a diagonal Gaussian like q(x_t | x_0): one named
# tuple serves both. Here mean is μ̃_t(x_t, x_0), variance β̃_t, log_variance log β̃_t clipped at
# the first step (see q_posterior).
Posterior = Gaussian


def q_posterior(schedule: Schedule, x0: Tensor, xt: Tensor, t: Tensor) -> Posterior:
    """Mean and variance of the forward-process posterior.

    Math: q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I) with
    μ̃_t = √ᾱ_{t-1} β_t / (1-ᾱ_t) · x_0 + √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t) · x_t  and
    β̃_t = (1-ᾱ_{t-1}) / (1-ᾱ_t) · β_t — book Eqs. (posterior-mean), (posterior-variance),
    Ho et al. Eqs. 6–7.

    At code index 0 (the paper's t = 1) ᾱ_0 = 1, so β̃ = 0 and μ̃ = x_0: given x_0 the
    posterior is a point mass. Its log variance would be -inf, which turns into NaN in a KL
    term or a log-space interpolation of variances, so ``log_variance`` takes β̃ of the next
    step there, as improved-diffusion does. Nothing is lost: at that step the variational bound
    uses the discretised decoder p(x_0 | x_1), not a Gaussian KL.
    """
    if x0.shape != xt.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but xt has {tuple(xt.shape)}")
    check_timesteps(schedule, t, xt)
    mean = extract(schedule.posterior_mean_coef_x0, t, xt) * x0 + extract(schedule.posterior_mean_coef_xt, t, xt) * xt
    return Posterior(
        mean,
        extract(schedule.posterior_variance, t, xt),
        extract(schedule.posterior_log_variance_clipped, t, xt),
    )
