"""The analytic oracle: the exact ε-predictor for Gaussian-mixture data.

If x_0 follows a mixture of diagonal Gaussians (:class:`~ddpm_utils.distributions.GaussianMixture`),
so does every q(x_t): component k becomes
N(√ᾱ_t μ_k, ᾱ_t σ_k² + 1-ᾱ_t). The best possible noise predictor (in mean squared error)
is ε*(x_t, t) = E[ε | x_t], which has a closed form here. It is the model a network can at
best learn, so it separates what training fails to learn from what the sampler loses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .distributions import GaussianMixture  # the data distribution; also importable from here, as before
from .models.embedding import check_labels
from .schedules import Schedule, append_dims, check_timesteps, extract
from .targets import Target, training_target


class MixtureOracle:
    """The exact predictor for data drawn from ``mixture`` under ``schedule``; a model.

    ``oracle(xt, t)`` returns E[ε | x_t] (or the x_0 / v equivalent, by ``target``) for
    ``xt`` of shape ``(B, D)``, or ``(B,)`` when D = 1. Computed in float64.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, target: Target = "eps"):
        self.mixture, self.schedule, self.target = mixture, schedule, target

    def _as_points(self, xt: Tensor) -> Tensor:
        if xt.ndim == 1 and self.mixture.dim == 1:
            return xt[:, None]
        return xt

    def _signal_and_noise(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """√ᾱ_t and 1 - ᾱ_t at each example's t, (B,) float64."""
        return self.schedule.sqrt_alpha_bars[t].double(), self.schedule.one_minus_alpha_bars[t].double()

    def log_prob_xt(self, xt: Tensor, t: Tensor) -> Tensor:
        """log q(x_t) at code index t, shape ``(B,)`` — the exact density of the noised data."""
        check_timesteps(self.schedule, t, xt)
        a, s2 = self._signal_and_noise(t)
        return self.mixture.noised_log_prob(self._as_points(xt).double(), a, s2)[0].to(xt.dtype)

    def posterior_mean_x0(self, xt: Tensor, t: Tensor) -> Tensor:
        """E[x_0 | x_t]: each component's Gaussian posterior mean, weighted by responsibility."""
        check_timesteps(self.schedule, t, xt)
        x = self._as_points(xt).double()
        a, s2 = self._signal_and_noise(t)
        _, log_r = self.mixture.noised_log_prob(x, a, s2)  # (B, K)
        comp_mean, comp_var, _ = self.mixture.noised_components(a, s2, x.device)
        var0 = self.mixture.stds.double().to(x.device) ** 2
        # E[x_0 | x_t, k] = μ_k + a σ_k² / (a² σ_k² + s²) · (x_t - a μ_k)
        cond = self.mixture.means.double().to(x.device) + a.reshape(-1, 1, 1) * var0 / comp_var * (x[:, None] - comp_mean)
        return (log_r.exp()[..., None] * cond).sum(1).reshape(xt.shape).to(xt.dtype)

    def reverse_kernel(self, xt: float, t: int, grid: Tensor) -> Tensor:
        """The true reverse kernel q(x_{t-1} | x_t) of 1-D data at the points ``grid``, a density.

        Bayes' rule: q(x_{t-1} | x_t) = q(x_t | x_{t-1}) q(x_{t-1}) / q(x_t), every factor exact —
        q(x_{t-1}) is the mixture pushed to the previous noise level (the data itself at code index
        t = 0), q(x_t) the same at t. No Gaussian assumption: this is what a reverse step must match.
        """
        if self.mixture.dim != 1:
            raise ValueError("reverse_kernel is for 1-D mixtures")
        if not 0 <= t < self.schedule.T:
            raise ValueError(f"t must lie in [0, {self.schedule.T - 1}], got {t}")
        g = grid.double().reshape(-1, 1)  # (G, 1) values of x_{t-1}
        beta = self.schedule.betas[t].double()
        log_step = -0.5 * ((xt - (1 - beta).sqrt() * g[:, 0]) ** 2 / beta + torch.log(2 * math.pi * beta))
        ones = torch.ones(len(g), dtype=torch.float64)
        a_prev = (self.schedule.sqrt_alpha_bars[t - 1].double() if t > 0 else 1.0) * ones  # √ᾱ_{t-1}, √ᾱ_0 = 1
        log_prev = self.mixture.noised_log_prob(g, a_prev, 1 - a_prev**2)[0]
        a_t, s2_t = self._signal_and_noise(torch.tensor([t]))
        log_here = self.mixture.noised_log_prob(torch.tensor([[float(xt)]], dtype=torch.float64), a_t, s2_t)[0]
        return torch.exp(log_step + log_prev - log_here).to(grid.dtype)

    def __call__(self, xt: Tensor, t: Tensor) -> Tensor:
        x0 = self.posterior_mean_x0(xt, t).double()
        a = extract(self.schedule.sqrt_alpha_bars.double(), t, x0)
        s = extract(self.schedule.sqrt_one_minus_alpha_bars.double(), t, x0)
        eps = (xt.double() - a * x0) / s  # E[ε | x_t], from x_t = a x_0 + s ε
        if self.target == "eps":
            return eps.to(xt.dtype)
        return training_target(self.schedule, x0.to(xt.dtype), t, eps.to(xt.dtype), self.target)


class LabelledMixtureOracle:
    """The exact class-conditional predictor: E[ε | x_t, y] with y the mixture component; a model.

    ``oracle(xt, t, y)`` with labels ``y`` of shape ``(B,)`` in ``[0, K]``: label k < K conditions on
    component k (its q(x_t | y = k) is one Gaussian), label K — the null label, also taken for
    ``y=None`` — gives the unconditional :class:`MixtureOracle`. So it is called like a
    class-conditional network trained for classifier-free guidance, and ``num_classes`` is K.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, target: Target = "eps"):
        self.mixture, self.schedule, self.target = mixture, schedule, target
        self.num_classes = len(mixture.weights)
        self.oracles = [MixtureOracle(mixture.component(k), schedule, target) for k in range(self.num_classes)]
        self.oracles.append(MixtureOracle(mixture, schedule, target))  # the null label

    def __call__(self, xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            return self.oracles[-1](xt, t)
        y = check_labels(y, xt.shape[0], self.num_classes, xt.device)
        out = torch.zeros_like(xt)
        for label, oracle in enumerate(self.oracles):  # every predictor on the whole batch: no host reads
            out = torch.where(append_dims(y, xt.ndim) == label, oracle(xt, t), out)
        return out


class GaussianBound(NamedTuple):
    """The bound and the exact likelihood for 1-D Gaussian data and the exact ε*, in nats.

    ``prior``, ``kl``, ``decoder``, ``total`` and ``model_nll`` are per data point when
    :func:`gaussian_data_bound` is given ``x0`` (shape ``(N,)``, ``kl`` then ``(N, T-1)``), and
    averaged over x_0 ~ N(mean, var) otherwise. ``entropy``, ``prior_kl`` and ``step_kl`` describe
    the data distribution as a whole.
    """

    prior: Tensor  # L_T = KL(q(x_T | x_0) ‖ N(0, 1))
    kl: Tensor  # (…, T-1) L_{t-1} for code indices t = 1 … T-1
    decoder: Tensor  # L_0 = -log p_θ(x_0 | x_1), the Gaussian (continuous-data) decoder
    total: Tensor  # L = L_T + Σ L_{t-1} + L_0
    model_nll: Tensor  # -log p_θ(x_0) of the reverse chain's exact marginal
    entropy: Tensor  # H(q(x_0)), the NLL of the data distribution itself
    prior_kl: Tensor  # KL(q(x_T) ‖ N(0, 1)) of the marginal
    step_kl: Tensor  # (T,) E_{q(x_t)} KL(q(x_{t-1} | x_t) ‖ p_θ(x_{t-1} | x_t)), code index t (0: the decoder step)


def gaussian_data_bound(
    schedule: Schedule, mean: float, var: float, variance: str = "beta_tilde", x0: Tensor | None = None
) -> GaussianBound:
    """Every term of the bound in closed form for x_0 ~ N(mean, var) in one dimension.

    The exact ε* makes μ_θ(x_t, t) = μ̃_t(x_t, E[x_0 | x_t]) linear in x_t, with
    E[x_0 | x_t] = m + g_t (x_t - √ᾱ_t m), g_t = √ᾱ_t s² / (ᾱ_t s² + 1 - ᾱ_t). So every term is a
    Gaussian integral: with c_0 = √ᾱ_{t-1} β_t / (1 - ᾱ_t), the x_0 coefficient of μ̃_t,
    L_{t-1} = ½ (log σ_t²/β̃_t + β̃_t/σ_t² - 1 + c_0² E[(x_0 - x̂_0)²] / σ_t²) — book Eqs. (gaussian-kl),
    (kl-constant); the reverse chain is linear-Gaussian, so p_θ(x_0) is a Gaussian found by pushing
    N(0, 1) through the T steps; and L averaged over the data exceeds H(q(x_0)) by KL(q(x_T) ‖ N(0, 1))
    plus the reverse-step KLs — book Eq. (gap-decomposition). Float64 throughout.
    """
    if var <= 0:
        raise ValueError(f"the data variance must be positive, got {var}")
    if variance not in ("beta_tilde", "beta"):
        raise ValueError(f"unknown reverse variance {variance!r}; expected 'beta_tilde' or 'beta'")
    f64 = dict(dtype=torch.float64)
    # Every coefficient again in float64 from the betas: the schedule stores float32, and the
    # identities checked against this function hold to 1e-7 only in float32.
    betas = schedule.betas.double().cpu()
    log_ab = torch.cumsum(torch.log1p(-betas), 0)
    ab = log_ab.exp()
    ab_prev = torch.cat([torch.ones(1, **f64), ab[:-1]])
    one_minus_ab = -torch.expm1(log_ab)
    c0 = ab_prev.sqrt() * betas / one_minus_ab  # x_0 coefficient of μ̃_t
    cx = (1 - betas).sqrt() * (1 - ab_prev) / one_minus_ab  # x_t coefficient of μ̃_t
    beta_tilde = betas * (1 - ab_prev) / one_minus_ab  # 0 at code index 0
    if variance == "beta":
        sigma2 = betas
    else:  # β̃, with the first step's value taken from the next step, as the package does
        sigma2 = torch.cat([beta_tilde[1:2] if schedule.T > 1 else betas[:1], beta_tilde[1:]])
    log_sigma2 = sigma2.log()
    m, s2 = torch.tensor(mean, **f64), torch.tensor(var, **f64)

    # E[x_0 | x_t] = m + g (x_t - √ᾱ m); Var[x_0 | x_t] = s² (1 - ᾱ) / (ᾱ s² + 1 - ᾱ)
    p = ab * s2 + one_minus_ab
    g = ab.sqrt() * s2 / p
    post_var = s2 * one_minus_ab / p  # (T,)
    d2 = s2 if x0 is None else (x0.double().cpu()[:, None] - m) ** 2  # (x_0 - m)², or its mean
    err2 = d2 * (one_minus_ab / p) ** 2 + g**2 * one_minus_ab  # E[(x_0 - x̂_0(x_t))² | x_0]: (T,) or (N, T)

    kl_all = 0.5 * (log_sigma2 - beta_tilde.clamp(min=1e-300).log() + beta_tilde / sigma2 - 1 + c0**2 * err2 / sigma2)
    kl = kl_all[..., 1:]
    decoder = 0.5 * (math.log(2 * math.pi) + log_sigma2[0] + err2[..., 0] / sigma2[0])
    x0_sq = (m**2 + s2) if x0 is None else x0.double().cpu() ** 2
    ab_T = ab[-1]
    prior = 0.5 * (-torch.log(one_minus_ab[-1]) + one_minus_ab[-1] + ab_T * x0_sq - 1)
    total = prior + kl.sum(-1) + decoder

    # p_θ(x_0): x_{t-1} = A x_t + b + σ_t z with A = c_0 g + c_x, b = c_0 m (1 - g √ᾱ), from x_T ~ N(0, 1)
    model_mean, model_var = torch.tensor(0.0, **f64), torch.tensor(1.0, **f64)
    for k in range(schedule.T - 1, -1, -1):
        a_k = c0[k] * g[k] + cx[k]
        model_mean = a_k * model_mean + c0[k] * m * (1 - g[k] * ab[k].sqrt())
        model_var = a_k**2 * model_var + sigma2[k]
    sq = ((m - model_mean) ** 2 + s2) if x0 is None else (x0.double().cpu() - model_mean) ** 2
    model_nll = 0.5 * (torch.log(2 * math.pi * model_var) + sq / model_var)

    entropy = 0.5 * torch.log(2 * math.pi * math.e * s2)
    prior_kl = 0.5 * (p[-1] + ab_T * m**2 - 1 - torch.log(p[-1]))
    true_var = beta_tilde + c0**2 * post_var  # Var(x_{t-1} | x_t); its mean equals the model's
    step_kl = 0.5 * (log_sigma2 - true_var.log() + true_var / sigma2 - 1)
    return GaussianBound(prior, kl, decoder, total, model_nll, entropy, prior_kl, step_kl)
