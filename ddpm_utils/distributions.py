"""Gaussian mixtures: toy data whose every noised marginal q(x_t) is known in closed form.

If x_0 follows a mixture of diagonal Gaussians, so does a x_0 + √s2 z for z ~ N(0, I): component k
becomes N(a μ_k, a² σ_k² + s2). With a = √ᾱ_t and s2 = 1 - ᾱ_t that is q(x_t) — book Eq.
(noised-mixture) — which is what the exact predictor of :mod:`ddpm_utils.oracle` is built from.
The book's two mixtures are :func:`ddpm_utils.data.mixture_1d` and :func:`ddpm_utils.data.mixture_2d`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


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
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` draws ``(n, D)`` and the component each came from, ``(n,)`` long in [0, K)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k] * z, k

    def component(self, k: int) -> "GaussianMixture":
        """Component ``k`` alone, as a one-component mixture: the data given the label k."""
        if not 0 <= k < len(self.weights):
            raise ValueError(f"component index must lie in [0, {len(self.weights) - 1}], got {k}")
        return GaussianMixture(torch.ones(1, dtype=self.weights.dtype), self.means[k : k + 1], self.stds[k : k + 1])

    def mean(self) -> Tensor:
        """E[x], shape ``(D,)``."""
        return self.weights @ self.means

    def variance(self) -> Tensor:
        """Var[x] per coordinate, shape ``(D,)``: Σ w_k (σ_k² + μ_k²) - E[x]²."""
        return self.weights @ (self.stds**2 + self.means**2) - self.mean() ** 2

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for ``x`` of shape ``(n, D)``, returns ``(n,)``."""
        ones = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        return self.noised_log_prob(x.double(), ones, 0 * ones)[0].to(x.dtype)

    def noised_components(self, a: Tensor, s2: Tensor, device) -> tuple[Tensor, Tensor, Tensor]:
        """The mixture of a x + √s2 z, one (a, s2) per example: means a μ_k and variances a² σ_k² + s2.

        ``a`` and ``s2`` are ``(B,)``; returns the component means and variances, ``(B, K, D)`` each,
        and the log-weights ``(K,)``, in float64 on ``device``.
        """
        means = self.means.double().to(device)  # (K, D)
        var0 = self.stds.double().to(device) ** 2  # (K, D)
        a, s2 = a.reshape(-1, 1, 1), s2.reshape(-1, 1, 1)  # (B, 1, 1)
        return a * means, a**2 * var0 + s2, self.weights.double().to(device).log()

    def noised_log_prob(self, x: Tensor, a: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        """log density of a x_0 + √s2 z at ``x`` (B, D), and the log responsibilities of the components (B, K).

        Math: log Σ_k w_k N(x; a μ_k, a² σ_k² + s2); responsibility r_k = w_k N_k / Σ_j w_j N_j.
        With a = √ᾱ_t and s2 = 1 - ᾱ_t this is log q(x_t), one t per example.
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (B, {self.dim}), got {tuple(x.shape)}")
        comp_mean, comp_var, log_w = self.noised_components(a, s2, x.device)
        diff = x[:, None, :] - comp_mean  # (B, K, D)
        log_n = -0.5 * (diff**2 / comp_var + torch.log(2 * math.pi * comp_var)).sum(-1)  # (B, K)
        joint = log_w + log_n
        log_p = torch.logsumexp(joint, dim=1)
        return log_p, joint - log_p[:, None]
