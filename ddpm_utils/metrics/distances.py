"""Distances between sample sets, for the toy data: how close are samples to the data?

:func:`wasserstein_1d` (exact, 1-D), :func:`sliced_wasserstein` (any D), :func:`mmd_rbf` (kernel
two-sample statistic, for the 2-D toys), :func:`mode_masses` and :func:`misplaced_mass` (the share
of samples in each mode of a Gaussian mixture, and how far those shares are from the mixture's).

scipy is imported inside the function that uses it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..distributions import GaussianMixture


def wasserstein_1d(x: Tensor, y: Tensor) -> float:
    """W1 between the empirical distributions of two 1-D samples (scipy, exact).

    Math: W1(p, q) = ∫ |F_p(u) - F_q(u)| du. Accepts shapes ``(N,)`` or ``(N, 1)``; the sizes
    may differ. W1(x, x + c) = |c|: the distance has the units of the data.
    """
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(_as_1d(x, "x"), _as_1d(y, "y")))


def mode_masses(samples: Tensor, mixture: GaussianMixture, width: float = 3.0) -> Tensor:
    """The fraction of ``samples`` in each mode of ``mixture``, and the fraction in none: ``(K + 1,)``.

    A sample belongs to mode k when it lies within ``width`` standard deviations of μ_k in every
    coordinate (z-scores with the component's own σ_k; the closest mode by the largest z-score when
    windows overlap); the last entry counts the samples outside every window. Samples of the
    mixture itself give w_k·(1 - P(|z| > width))^D per mode: (0.2992, 0.6981, 0.0027) for the
    book's 1-D mixture at width 3. Shapes ``(N,)`` (D = 1) or ``(N, D)``.
    """
    x = samples[:, None] if samples.ndim == 1 else samples
    if x.ndim != 2 or x.shape[1] != mixture.dim or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty sample (N, {mixture.dim}), got {tuple(samples.shape)}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    z = ((x.double()[:, None, :] - mixture.means.double()) / mixture.stds.double()).abs().amax(-1)  # (N, K)
    nearest = z.argmin(1)  # (N,)
    inside = z.gather(1, nearest[:, None])[:, 0] <= width
    counts = torch.bincount(nearest[inside], minlength=z.shape[1]).double()
    return torch.cat([counts, (~inside).sum().double()[None]]) / x.shape[0]


def misplaced_mass(samples: Tensor, mixture: GaussianMixture, width: float = 3.0) -> float:
    """The share of ``samples`` that would have to move to give the mode shares of ``mixture``.

    Math: ½ Σ_j |m_j - m_j*| over the K modes and "neither" of :func:`mode_masses`, where m* are
    the shares the mixture itself has, w_k (1 - P(|z| > width))^D and the rest. It is the total
    variation between the two share vectors: 0 for samples of the mixture (up to sampling noise),
    1 - w_k (1 - P(|z| > width))^D when every sample sits in mode k, and about 1 when none lands
    in any mode. It sees the weights of the modes, not their shapes: use it beside a distance.
    """
    inside = (1 - 2 * torch.special.ndtr(torch.tensor(-width, dtype=torch.float64))) ** mixture.dim
    expected = torch.cat([mixture.weights.double() * inside, (1 - inside).reshape(1)])
    return 0.5 * (mode_masses(samples, mixture, width) - expected).abs().sum().item()


def _as_1d(x: Tensor, name: str):
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty sample (N,) or (N, 1) for {name}, got {tuple(x.shape)}")
    return x.detach().double().cpu().numpy()


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced W1 between samples ``x`` (N, D) and ``y`` (M, D); N and M may differ.

    Math: SW1(p, q) = E_θ[ W1(θᵀx, θᵀy) ], θ uniform on the unit sphere, estimated with
    ``n_projections`` random directions. p = 1, so it has the units of the data, like
    :func:`wasserstein_1d`. Each 1-D W1 is exact: W1 = ∫₀¹ |F⁻¹(u) - G⁻¹(u)| du, and both
    empirical quantile functions are constant between the breakpoints {i/N} ∪ {j/M}, so the
    integral is a finite sum over those intervals.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) == 0:
        raise ValueError(f"expected samples (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be positive, got {n_projections}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)  # (D, P) unit directions
    x_proj = (x @ theta).T.sort(dim=1).values  # (P, N) sorted projections = quantile functions
    y_proj = (y @ theta).T.sort(dim=1).values  # (P, M)
    n, m = len(x), len(y)
    steps_x = torch.arange(1, n + 1, dtype=torch.float64) / n
    steps_y = torch.arange(1, m + 1, dtype=torch.float64) / m
    breaks = torch.cat([steps_x, steps_y]).unique()  # sorted, ends at 1
    edges = torch.cat([torch.zeros(1, dtype=torch.float64), breaks])  # 0 < … < 1
    mid, width = (edges[1:] + edges[:-1]) / 2, edges.diff()  # one point inside each interval
    i = (mid * n).long().clamp(max=n - 1)  # F⁻¹(u) = x_(⌊uN⌋) on that interval (0-based)
    j = (mid * m).long().clamp(max=m - 1)
    w1 = ((x_proj[:, i] - y_proj[:, j]).abs() * width).sum(dim=1)  # (P,)
    return float(w1.mean())


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Unbiased squared MMD between samples ``x`` (N, D) and ``y`` (M, D), a sum of RBF kernels.

    Math: k(a, b) = Σ_h exp(-|a - b|² / (2h²)),
    MMD² = mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j).
    Zero in expectation when both samples come from one distribution, so it can come out slightly
    negative. Several bandwidths make it sensitive at several length scales; the defaults suit
    the unit-scale 2-D toys. Memory is O(N M): use a few thousand points.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"expected samples (N, D), (M, D), N, M ≥ 2; got {tuple(x.shape)}, {tuple(y.shape)}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()

    def kernel_mean(a: Tensor, b: Tensor, skip_diagonal: bool) -> Tensor:
        d2 = torch.cdist(a, b).square()  # (len(a), len(b)) squared distances
        k = sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)
        if skip_diagonal:
            return (k.sum() - k.diagonal().sum()) / (len(a) * (len(a) - 1))
        return k.mean()

    return float(kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2 * kernel_mean(x, y, False))
