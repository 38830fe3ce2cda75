"""Tests of ddpm_utils.oracle: Gaussian mixtures and the exact noise predictor ε*(x_t, t) = E[ε | x_t].

Independent routes: torch.distributions.MixtureSameFamily for the densities, autograd of
log q(x_t) for the score identity (Tweedie), Bayes' rule on a grid for E[x_0 | x_t], and
Monte Carlo for the MSE-optimality of ε*.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ddpm_utils import GaussianMixture, MixtureOracle, make_schedule, q_sample
from reference import linear_betas, loop_alpha_bars

BOOK = make_schedule()  # linear, T = 1000


def two_mode():
    """The book's 1-D toy: weights 0.3/0.7, means -1/1, stds 0.15/0.25."""
    return GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.15], [0.25]]))


def three_blobs():
    """A 2-D mixture with unequal, axis-dependent spreads."""
    return GaussianMixture(
        torch.tensor([0.2, 0.5, 0.3]),
        torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.5, -1.5]]),
        torch.tensor([[0.3, 0.5], [0.2, 0.2], [0.6, 0.1]]),
    )


def reference(mix, scale=1.0, noise_var=0.0):
    """The mixture of N(scale·μ_k, scale²σ_k² + noise_var) with torch.distributions, float64."""
    means, var = scale * mix.means.double(), scale**2 * mix.stds.double() ** 2 + noise_var
    return MixtureSameFamily(Categorical(probs=mix.weights.double()), Independent(Normal(means, var.sqrt()), 1))


def noise_level(t):
    """(√ᾱ_t, 1-ᾱ_t) from the schedule's accurately stored √(1-ᾱ_t), in float64."""
    s = BOOK.sqrt_one_minus_alpha_bars[t].double()
    return BOOK.sqrt_alpha_bars[t].double(), s**2


@pytest.mark.parametrize("make", [two_mode, three_blobs])
def test_sample_moments_match_mean_and_variance(make):
    """E x = Σ w_k μ_k and Var x = Σ w_k (σ_k² + μ_k²) - (E x)², per coordinate, within 5 SE of
    N = 100 000 draws: SE(mean) = √(var/N), SE(var) = √((μ₄ - var²)/N), μ₄ in closed form."""
    mix, N = make(), 100_000
    x = mix.sample(N, torch.Generator().manual_seed(0)).double()
    assert x.shape == (N, mix.dim)
    w, mu, sd = mix.weights.double()[:, None], mix.means.double(), mix.stds.double()
    mean, var = mix.mean().double(), mix.variance().double()
    torch.testing.assert_close(mean, (w * mu).sum(0))
    torch.testing.assert_close(var, (w * (sd**2 + mu**2)).sum(0) - mean**2)
    d = mu - mean
    mu4 = (w * (d**4 + 6 * d**2 * sd**2 + 3 * sd**4)).sum(0)
    assert ((x.mean(0) - mean).abs() < 5 * (var / N).sqrt()).all()
    assert ((x.var(0) - var).abs() < 5 * ((mu4 - var**2) / N).sqrt()).all()


def test_two_mode_mixture_moments_by_hand():
    mix = two_mode()
    assert mix.mean().item() == pytest.approx(0.4) and mix.variance().item() == pytest.approx(0.8905)


@pytest.mark.parametrize("make", [two_mode, three_blobs])
def test_log_prob_matches_mixture_same_family(make):
    mix = make()
    x = 2 * torch.randn(500, mix.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # atol 1e-7: Categorical renormalises the float32 weights (their sum is 1 ± 6e-8), the
    # package takes log w_k as given; both are right to that precision.
    torch.testing.assert_close(mix.log_prob(x), reference(mix).log_prob(x), rtol=1e-10, atol=1e-7)
    assert mix.log_prob(x.float()).dtype == torch.float32


BOOK_ABAR = loop_alpha_bars(linear_betas(1000))  # the book's ᾱ, float64 loop over hand-written betas


@pytest.mark.parametrize("t", [0, 10, 500, 999])
@pytest.mark.parametrize("make", [two_mode, three_blobs])
def test_log_prob_xt_is_the_noised_mixture_eq_noised_mixture(make, t):
    """Book Eq. (noised-mixture): q(x_t) = Σ_k w_k N(√ᾱ_t μ_k, ᾱ_t σ_k² + 1-ᾱ_t), each component pushed
    through Eq. (forward-closed-form); density by torch.distributions.MixtureSameFamily, with ᾱ_t from
    a float64 Python loop over the betas (not from the package). Tolerance relative to log q, which
    reaches about -100 for far points at small t; the package's float32 ᾱ allows ~1e-7."""
    mix = make()
    x = 2 * torch.randn(500, mix.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    abar = BOOK_ABAR[t]
    expected = reference(mix, math.sqrt(abar), 1 - abar).log_prob(x)
    got = MixtureOracle(mix, BOOK).log_prob_xt(x, torch.full((500,), t))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def wide_two_mode():
    """A 1-D mixture with one wide component (σ = 2), where ᾱσ² and √ᾱσ² differ visibly."""
    return GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[-2.0], [3.0]]), torch.tensor([[0.5], [2.0]]))


@pytest.mark.parametrize("t", [30, 150, 400])
@pytest.mark.parametrize("make", [two_mode, wide_two_mode])
def test_noised_samples_follow_the_oracle_density_eq_noised_mixture(make, t):
    """Book Eq. (noised-mixture) by Monte Carlo: draws of a 1-D mixture (drawn here, not by mix.sample),
    noised with the package's q_sample, pass a Kolmogorov–Smirnov test (p > 1e-4, fixed seed,
    N = 100 000) against the CDF obtained by integrating exp(log_prob_xt) on a grid (trapezoid rule;
    the density must integrate to 1). This ties the oracle to the forward process itself; a change of
    ᾱ made consistently in both is left to the test above."""
    mix, N = make(), 100_000
    g = torch.Generator().manual_seed(30 + t)
    k = torch.multinomial(mix.weights.double(), N, replacement=True, generator=g)
    z = torch.randn(N, generator=g, dtype=torch.float64)
    x0 = mix.means.double()[k, 0] + mix.stds.double()[k, 0] * z
    xt = q_sample(BOOK, x0, torch.full((N,), t), generator=g)
    grid = torch.linspace(-16.0, 16.0, 64_001, dtype=torch.float64)
    density = MixtureOracle(mix, BOOK).log_prob_xt(grid, torch.full((grid.numel(),), t)).exp()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(density, grid)])
    assert abs(cdf[-1].item() - 1) < 1e-6
    cdf_np, grid_np = cdf.numpy(), grid.numpy()
    assert stats.kstest(xt.numpy(), lambda v: np.interp(v, grid_np, cdf_np)).pvalue > 1e-4


def score_route_eps(oracle, x, t):
    """-√(1-ᾱ_t) ∇_{x_t} log q(x_t) by autograd through log_prob_xt (Tweedie / score identity)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(oracle.log_prob_xt(x, t).sum(), x)
    s = BOOK.sqrt_one_minus_alpha_bars[t].double().reshape((-1,) + (1,) * (x.ndim - 1))
    return -s * grad


@pytest.mark.parametrize("t", [0, 10, 100, 999])
@pytest.mark.parametrize("make", [two_mode, three_blobs])
def test_eps_star_is_minus_sigma_times_score_tweedie(make, t):
    """ε*(x_t, t) = E[ε | x_t] = -√(1-ᾱ_t) ∇ log q(x_t) (Tweedie's formula; Song et al. 2021,
    Ho et al. Sec. 3.2), in float64. rtol 1e-5: the schedule's float32 coefficients allow ~1e-7.
    At small t this needs 1-ᾱ_t to be taken consistently from the accurate stored value."""
    mix = make()
    oracle = MixtureOracle(mix, BOOK)
    x = 1.5 * torch.randn(400, mix.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tt = torch.full((400,), t)
    torch.testing.assert_close(oracle(x, tt), score_route_eps(oracle, x, tt), rtol=1e-5, atol=1e-6)


def grid_posterior_mean_x0(xt, t, n=200_001):
    """E[x_0 | x_t] ∝ ∫ x_0 p(x_0) N(x_t; √ᾱ x_0, 1-ᾱ) dx_0 for the two-mode mixture, on a grid."""
    a, s2 = noise_level(t)
    x0 = torch.linspace(-3.0, 3.0, n, dtype=torch.float64)
    log_w = reference(two_mode()).log_prob(x0[:, None]) - 0.5 * (xt - a * x0) ** 2 / s2
    w = torch.exp(log_w - log_w.max())
    return ((w * x0).sum() / w.sum()).item()


@pytest.mark.parametrize("t", [0, 10, 100, 500, 999])
def test_x0_target_is_posterior_mean_by_bayes_on_a_grid(t):
    """The oracle with target="x0" returns E[x_0 | x_t]; compare with Bayes' rule on a grid."""
    xt = torch.tensor([-1.3, -0.2, 0.0, 0.45, 1.1], dtype=torch.float64)
    tt = torch.full((5,), t)
    got = MixtureOracle(two_mode(), BOOK, target="x0")(xt, tt)
    expected = torch.tensor([grid_posterior_mean_x0(v.item(), t) for v in xt], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_eps_x0_and_v_outputs_describe_one_x_t_eq_v_definition():
    """x_t = √ᾱ x̂_0 + √(1-ᾱ) ε* and v* = √ᾱ ε* - √(1-ᾱ) x̂_0 (book Eq. (v-definition))."""
    mix = two_mode()
    g = torch.Generator().manual_seed(4)
    xt = 1.5 * torch.randn(300, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (300,), generator=g)
    eps, x0, v = (MixtureOracle(mix, BOOK, target=k)(xt, t) for k in ("eps", "x0", "v"))
    a, s = BOOK.sqrt_alpha_bars[t].double(), BOOK.sqrt_one_minus_alpha_bars[t].double()
    torch.testing.assert_close(a * x0 + s * eps, xt, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v, a * eps - s * x0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [two_mode, three_blobs])
def test_eps_star_is_the_mse_optimal_predictor_ho_eq14(make):
    """ε* = E[ε | x_t] minimises the L_simple regression (Ho et al. Eq. 14), over t ~ U{0..T-1}:

    * perturbing it (scale 1 ± 0.05, shift ± 0.05) raises the Monte-Carlo MSE;
    * orthogonality: MSE(ε*) = E‖ε‖² - E‖ε*‖², i.e. the mean of 2ε*·(ε* - ε) is 0 within 5 SE.
    N = 100 000 pairs (x_t, ε); the perturbation margins are ≥ 3x the 5-SE noise (δ² vs 2δ·5 SE)."""
    mix, N = make(), 100_000
    g = torch.Generator().manual_seed(5)
    x0 = mix.sample(N, g).double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, BOOK.T, (N,), generator=g)
    xt = q_sample(BOOK, x0, t, noise=eps)
    star = MixtureOracle(mix, BOOK)(xt, t)

    def mse(pred):
        return ((pred - eps) ** 2).sum(1).mean().item()

    best = mse(star)
    for other in (1.05 * star, 0.95 * star, star + 0.05, star - 0.05):
        assert mse(other) > best
    gap = (2 * star * (star - eps)).sum(1)
    assert abs(gap.mean().item()) < 5 * gap.std().item() / math.sqrt(N)
    assert best < mse(BOOK.sqrt_one_minus_alpha_bars[t, None].double() * xt)  # beats the N(0, I) data optimum


def test_oracle_accepts_B_and_B1_for_1d_and_B2_for_2d_mixtures():
    g = torch.Generator().manual_seed(6)
    t = torch.randint(0, 1000, (16,), generator=g)
    x = torch.randn(16, generator=g)
    one_d = MixtureOracle(two_mode(), BOOK)
    flat, column = one_d(x, t), one_d(x[:, None], t)
    assert flat.shape == (16,) and column.shape == (16, 1) and flat.dtype == torch.float32
    torch.testing.assert_close(flat, column[:, 0])
    torch.testing.assert_close(one_d.log_prob_xt(x, t), one_d.log_prob_xt(x[:, None], t))
    two_d = MixtureOracle(three_blobs(), BOOK)
    assert two_d(torch.randn(16, 2, generator=g), t).shape == (16, 2)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        two_d(torch.randn(16, 3, generator=g), t)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        one_d(x, torch.full((16,), 1000))


@pytest.mark.parametrize(
    "weights, means, stds, message",
    [
        ([0.5, 0.4], [[0.0], [1.0]], [[1.0], [1.0]], "sum to 1"),
        ([1.2, -0.2], [[0.0], [1.0]], [[1.0], [1.0]], "positive"),
        ([1.0, 0.0], [[0.0], [1.0]], [[1.0], [1.0]], "positive"),
        ([0.5, 0.5], [[0.0], [1.0]], [[1.0], [-1.0]], "standard deviations must be positive"),
        ([0.5, 0.5], [[0.0], [1.0]], [[1.0], [0.0]], "standard deviations must be positive"),
        ([0.5, 0.5], [[0.0], [1.0]], [[1.0, 1.0], [1.0, 1.0]], "expected weights"),
        ([0.3, 0.3, 0.4], [[0.0], [1.0]], [[1.0], [1.0]], "expected weights"),
        ([0.5, 0.5], [0.0, 1.0], [0.1, 0.1], "expected weights"),
    ],
)
def test_bad_mixture_parameters_raise(weights, means, stds, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(torch.tensor(weights), torch.tensor(means), torch.tensor(stds))


def test_log_prob_rejects_points_of_the_wrong_dimension():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        three_blobs().log_prob(torch.zeros(4, 3))
