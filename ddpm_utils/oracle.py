"""The analytic oracle: the exact ε-predictor for Gaussian-mixture data.

If x_0 follows a mixture of diagonal Gaussians, so does every q(x_t): component k becomes
N(√ᾱ_t μ_k, ᾱ_t σ_k² + 1-ᾱ_t). The best possible noise predictor (in mean squared error)
is ε*(x_t, t) = E[ε | x_t], which has a closed form here. It is the model a network can at
best learn, so it separates what training fails to learn from what the sampler loses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .schedules import Schedule, check_timesteps, extract
from .targets import Target, training_target


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A mixture of K Gaussians with diagonal covariance in D dimensions."""

    weights: Tensor  # (K,) mixing weights, positive, summing to 1
    means: Tensor  # (K, D) component means
    stds: Tensor  # (K, D) component standard deviations, positive

    def __post_init__(self):
        w, m, s = self.weights, self.means, self.stds
        if w.ndim != 1 or m.ndim != 2 or s.shape != m.shape or m.shape[0] != w.shape[0]:
            raise ValueError(
                f"expected weights (K,), means (K, D), stds (K, D); got {tuple(w.shape)}, "
                f"{tuple(m.shape)}, {tuple(s.shape)}"
            )
        if (w <= 0).any() or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"mixture weights must be positive and sum to 1, got {w.tolist()}")
        if (s <= 0).any():
            raise ValueError("component standard deviations must be positive")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws, shape ``(n, D)``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k] * z

    def mean(self) -> Tensor:
        """E[x], shape ``(D,)``."""
        return self.weights @ self.means

    def variance(self) -> Tensor:
        """Var[x] per coordinate, shape ``(D,)``: Σ w_k (σ_k² + μ_k²) - E[x]²."""
        return self.weights @ (self.stds**2 + self.means**2) - self.mean() ** 2

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for ``x`` of shape ``(n, D)``, returns ``(n,)``."""
        ones = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        return _mixture_log_prob(self, x.double(), ones, 0 * ones)[0].to(x.dtype)


def _components(mixture: GaussianMixture, a: Tensor, s2: Tensor, device) -> tuple[Tensor, Tensor, Tensor]:
    """Per-example component means and variances of q(x_t): (B, K, D) each, and log-weights (K,)."""
    means = mixture.means.double().to(device)  # (K, D)
    var0 = mixture.stds.double().to(device) ** 2  # (K, D)
    a, s2 = a.reshape(-1, 1, 1), s2.reshape(-1, 1, 1)  # (B, 1, 1)
    return a * means, a**2 * var0 + s2, mixture.weights.double().to(device).log()


def _mixture_log_prob(mixture: GaussianMixture, x: Tensor, a: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
    """log q(x) and the log responsibilities (B, K) for q(x_t) with signal a and noise variance s2."""
    if x.ndim != 2 or x.shape[1] != mixture.dim:
        raise ValueError(f"expected points of shape (B, {mixture.dim}), got {tuple(x.shape)}")
    comp_mean, comp_var, log_w = _components(mixture, a, s2, x.device)
    diff = x[:, None, :] - comp_mean  # (B, K, D)
    log_n = -0.5 * (diff**2 / comp_var + torch.log(2 * math.pi * comp_var)).sum(-1)  # (B, K)
    joint = log_w + log_n
    log_p = torch.logsumexp(joint, dim=1)
    return log_p, joint - log_p[:, None]


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
        return _mixture_log_prob(self.mixture, self._as_points(xt).double(), a, s2)[0].to(xt.dtype)

    def posterior_mean_x0(self, xt: Tensor, t: Tensor) -> Tensor:
        """E[x_0 | x_t]: each component's Gaussian posterior mean, weighted by responsibility."""
        check_timesteps(self.schedule, t, xt)
        x = self._as_points(xt).double()
        a, s2 = self._signal_and_noise(t)
        _, log_r = _mixture_log_prob(self.mixture, x, a, s2)  # (B, K)
        comp_mean, comp_var, _ = _components(self.mixture, a, s2, x.device)
        var0 = self.mixture.stds.double().to(x.device) ** 2
        # E[x_0 | x_t, k] = μ_k + a σ_k² / (a² σ_k² + s²) · (x_t - a μ_k)
        cond = self.mixture.means.double().to(x.device) + a.reshape(-1, 1, 1) * var0 / comp_var * (x[:, None] - comp_mean)
        return (log_r.exp()[..., None] * cond).sum(1).reshape(xt.shape).to(xt.dtype)

    def __call__(self, xt: Tensor, t: Tensor) -> Tensor:
        x0 = self.posterior_mean_x0(xt, t).double()
        a = extract(self.schedule.sqrt_alpha_bars.double(), t, x0)
        s = extract(self.schedule.sqrt_one_minus_alpha_bars.double(), t, x0)
        eps = (xt.double() - a * x0) / s  # E[ε | x_t], from x_t = a x_0 + s ε
        if self.target == "eps":
            return eps.to(xt.dtype)
        return training_target(self.schedule, self.target, x0.to(xt.dtype), eps.to(xt.dtype), t)


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
