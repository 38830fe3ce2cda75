"""The analytic oracle: the exact ε-predictor for Gaussian-mixture data.

If x_0 follows a mixture of diagonal Gaussians, so does every q(x_t): component k becomes
N(√ᾱ_t μ_k, ᾱ_t σ_k² + 1-ᾱ_t). The best possible noise predictor (in mean squared error)
is ε*(x_t, t) = E[ε | x_t], which has a closed form here. It is the model a network can at
best learn, so it separates what training fails to learn from what the sampler loses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
