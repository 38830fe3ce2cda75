"""Tests of ddpm_utils.posterior: q(x_{t-1} | x_t, x_0), book Eqs. (posterior-mean),
(posterior-variance), Ho et al. Eqs. 6–7.

Two independent routes: Bayes' rule evaluated on a fine 1-D grid, and a Monte-Carlo regression
of x_{t-1} on (x_0, x_t) over samples of the iterated forward chain.
"""

import math

import pytest
import torch

from ddpm_utils import q_posterior, q_step, schedule_from_betas
from reference import loop_alpha_bars, loop_coefficients

BETAS = [0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]  # T = 10, code index t ↔ paper t+1
T = len(BETAS)


ABAR = loop_alpha_bars(BETAS)


@pytest.fixture(scope="module")
def schedule():
    return schedule_from_betas(BETAS)


def one(value, dtype=torch.float64):
    return torch.tensor([value], dtype=dtype)


def bayes_on_grid(x0, xt, t, n=200_001):
    """Mean and variance of q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) q(x_t | x_{t-1}), on a grid.

    Prior N(√ᾱ_{t-1} x_0, 1-ᾱ_{t-1}) and likelihood N(x_t; √α_t x_{t-1}, β_t), paper indices;
    here ``t`` is the code index, so ᾱ_{t-1} is ABAR[t-1] and β_t is BETAS[t].
    """
    abar_prev, beta = ABAR[t - 1], BETAS[t]
    prior_mean, prior_std = math.sqrt(abar_prev) * x0, math.sqrt(1 - abar_prev)
    lik_center, lik_std = xt / math.sqrt(1 - beta), math.sqrt(beta / (1 - beta))  # in x_{t-1}
    lo = min(prior_mean - 12 * prior_std, lik_center - 12 * lik_std)
    hi = max(prior_mean + 12 * prior_std, lik_center + 12 * lik_std)
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    log_prior = -0.5 * ((x - prior_mean) / prior_std) ** 2
    log_lik = -0.5 * (xt - math.sqrt(1 - beta) * x) ** 2 / beta
    w = torch.exp(log_prior + log_lik - (log_prior + log_lik).max())
    w = w / w.sum()  # normalise numerically
    mean = (w * x).sum()
    return mean.item(), (w * (x - mean) ** 2).sum().item()


@pytest.mark.parametrize("t", [1, 2, 5, T - 1])
@pytest.mark.parametrize("x0, xt", [(0.8, -0.5), (-1.0, 1.3), (0.0, 0.0)])
def test_posterior_matches_bayes_rule_on_a_grid_eq_posterior_mean_variance_ho_eq6_7(schedule, t, x0, xt):
    """Book Eqs. (posterior-mean), (posterior-variance), Ho et al. Eqs. 6–7, against Bayes' rule."""
    grid_mean, grid_var = bayes_on_grid(x0, xt, t)
    post = q_posterior(schedule, one(x0), one(xt), torch.tensor([t]))
    assert post.mean.item() == pytest.approx(grid_mean, rel=1e-5, abs=1e-6)
    assert post.variance.item() == pytest.approx(grid_var, rel=1e-5)
    assert post.log_variance.item() == pytest.approx(math.log(grid_var), abs=1e-5)


@pytest.mark.parametrize("t", [1, 5, T - 1])
def test_posterior_matches_monte_carlo_regression_on_the_forward_chain(schedule, t):
    """Ho et al. Eqs. 6–7 by simulation: x_{t-1} given (x_0, x_t) is linear-Gaussian.

    Run the chain with q_step from x_0 ~ U(-1, 1), regress x_{t-1} on (1, x_0, x_t) by least
    squares. Coefficient SEs from σ̂² (XᵀX)⁻¹; residual-variance SE σ²√(2/N); tolerance 5 SE.
    """
    N = 200_000
    g = torch.Generator().manual_seed(10 + t)
    x0 = torch.rand(N, generator=g, dtype=torch.float64) * 2 - 1
    x = x0
    for s in range(t):  # code indices 0 … t-1 produce x_{t-1}
        x = q_step(schedule, x, torch.full((N,), s), generator=g)
    x_prev = x
    xt = q_step(schedule, x_prev, torch.full((N,), t), generator=g)
    X = torch.stack([torch.ones(N, dtype=torch.float64), x0, xt], dim=1)  # (N, 3)
    coef = torch.linalg.lstsq(X, x_prev[:, None]).solution.flatten()
    resid_var = ((x_prev - X @ coef) ** 2).sum().item() / (N - 3)
    se = (resid_var * torch.linalg.inv(X.T @ X).diagonal()).sqrt()

    coef_x0 = q_posterior(schedule, one(1.0), one(0.0), torch.tensor([t])).mean.item()
    coef_xt = q_posterior(schedule, one(0.0), one(1.0), torch.tensor([t])).mean.item()
    expected = torch.tensor([0.0, coef_x0, coef_xt], dtype=torch.float64)
    assert ((coef - expected).abs() < 5 * se).all(), (coef, expected, se)
    variance = q_posterior(schedule, one(0.0), one(0.0), torch.tensor([t])).variance.item()
    assert abs(resid_var - variance) < 5 * variance * math.sqrt(2 / N)


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 3, 3)])
def test_posterior_broadcasts_per_example_t_as_product_of_gaussians(schedule, shape):
    """Per example, μ̃ and β̃ equal the precision-weighted product of the two Gaussians:
    1/β̃ = 1/(1-ᾱ_{t-1}) + α_t/β_t and μ̃ = β̃ (√ᾱ_{t-1} x_0/(1-ᾱ_{t-1}) + √α_t x_t/β_t)."""
    g = torch.Generator().manual_seed(11)
    x0, xt = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.tensor([1, 9, 4, 4])
    post = q_posterior(schedule, x0, xt, t)
    assert post.mean.shape == shape and post.variance.shape == (4,) + (1,) * (len(shape) - 1)
    for b in range(4):
        abar_prev, beta = ABAR[int(t[b]) - 1], BETAS[int(t[b])]
        var = 1 / (1 / (1 - abar_prev) + (1 - beta) / beta)
        mean = var * (math.sqrt(abar_prev) * x0[b].double() / (1 - abar_prev) + math.sqrt(1 - beta) * xt[b].double() / beta)
        torch.testing.assert_close(post.mean[b].double(), mean, rtol=1e-5, atol=1e-6)
        assert post.variance[b].item() == pytest.approx(var, rel=1e-6)


def test_posterior_at_code_index_0_is_a_point_mass_at_x0(schedule):
    """Paper t = 1: ᾱ_0 = 1, so β̃_1 = 0 and μ̃_1 = x_0 whatever x_1 is."""
    g = torch.Generator().manual_seed(12)
    x0, xt = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    post = q_posterior(schedule, x0, xt, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(post.mean, x0, rtol=1e-6, atol=1e-7)
    assert (post.variance == 0).all()


def test_clipped_log_variance_at_index_0_is_log_of_index_1_variance_and_finite(schedule):
    """log β̃ would be -inf at code index 0; the package uses log β̃ of code index 1 there."""
    x = torch.zeros(2)
    post = q_posterior(schedule, x, x, torch.tensor([0, 1]))
    assert torch.isfinite(post.log_variance).all()
    assert post.log_variance[0] == post.log_variance[1]
    assert post.log_variance[1].item() == pytest.approx(math.log(bayes_on_grid(0.0, 0.0, 1)[1]), abs=1e-5)


def test_single_step_chain_clipped_log_variance_is_finite():
    """With T = 1 there is no index 1; the clipped log variance falls back to log β_1."""
    s = schedule_from_betas([0.3])
    post = q_posterior(s, torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.long))
    assert (post.variance == 0).all() and torch.isfinite(post.log_variance).all()
    assert post.log_variance[0].item() == pytest.approx(math.log(0.3), rel=1e-6)
    torch.testing.assert_close(post.mean, torch.zeros(2))


def test_posterior_rejects_mismatched_shapes_and_bad_t(schedule):
    with pytest.raises(ValueError, match="x0 has shape"):
        q_posterior(schedule, torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        q_posterior(schedule, torch.zeros(2), torch.zeros(2), torch.tensor([1, T]))
    with pytest.raises(ValueError, match="one timestep per example"):
        q_posterior(schedule, torch.zeros(2), torch.zeros(2), torch.tensor([1]))


# ---------------------------------------------------------------------------------------------
# Chapter 3: the posterior derived, cross-checked, and the choice of the reverse variance
# ---------------------------------------------------------------------------------------------

LINEAR = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
F64 = dict(dtype=torch.float64)


def _coefs(betas):
    """β, α, ᾱ, ᾱ_{t-1} as float64 tensors indexed by code t (reference.loop_coefficients)."""
    return tuple(torch.tensor(c, dtype=torch.float64) for c in loop_coefficients(betas))


@pytest.mark.parametrize("betas", [BETAS, LINEAR], ids=["short", "linear"])
def test_posterior_precision_is_the_sum_of_the_two_precisions_eq_posterior_precision(betas):
    """1/β̃_t = α_t/β_t + 1/(1-ᾱ_{t-1}) at every t ≥ 2, ᾱ from a float64 loop, against the package's β̃."""
    beta, alpha, _, abar_prev = _coefs(betas)
    schedule = schedule_from_betas(betas)
    precision = alpha[1:] / beta[1:] + 1 / (1 - abar_prev[1:])
    torch.testing.assert_close(schedule.posterior_variance[1:].double(), 1 / precision, rtol=1e-5, atol=0)


@pytest.mark.parametrize("betas", [BETAS, LINEAR], ids=["short", "linear"])
def test_posterior_is_the_conditional_of_the_joint_gaussian_eq_posterior_joint(betas):
    """Given x_0, (x_{t-1}, x_t) is a 2-D Gaussian with covariance √α_t (1-ᾱ_{t-1}); conditioning it on x_t
    (Schur complement of the 2×2 covariance, built here from ᾱ by a loop) gives q_posterior's mean and variance."""
    beta, alpha, abar, abar_prev = _coefs(betas)
    schedule = schedule_from_betas(betas)
    g = torch.Generator().manual_seed(0)
    for t in (1, 2, len(betas) // 2, len(betas) - 1):
        x0 = torch.randn(5, generator=g, **F64)
        xt = torch.randn(5, generator=g, **F64) * 1.3
        cov = torch.tensor([[1 - abar_prev[t], alpha[t].sqrt() * (1 - abar_prev[t])],
                            [alpha[t].sqrt() * (1 - abar_prev[t]), 1 - abar[t]]], **F64)
        means = torch.stack([abar_prev[t].sqrt() * x0, abar[t].sqrt() * x0])  # (2, 5)
        # Monte Carlo check that this is the joint law: x_t = √α_t x_{t-1} + √β_t ε_t
        prev = abar_prev[t].sqrt() * 0.5 + (1 - abar_prev[t]).sqrt() * torch.randn(200_000, generator=g, **F64)
        nxt = alpha[t].sqrt() * prev + beta[t].sqrt() * torch.randn(200_000, generator=g, **F64)
        empirical = torch.cov(torch.stack([prev, nxt]))
        torch.testing.assert_close(empirical, cov, rtol=0, atol=0.01)
        cond_mean = means[0] + cov[0, 1] / cov[1, 1] * (xt - means[1])
        cond_var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
        post = q_posterior(schedule, x0[:, None], xt[:, None], torch.full((5,), t))
        torch.testing.assert_close(post.mean[:, 0].double(), cond_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(post.variance.reshape(-1)[0].double(), cond_var, rtol=1e-5, atol=1e-9)


def _grid_reverse_kernel(points, weights, t, xt, betas, n=40_001):
    """q(x_{t-1} | x_t) on a grid by Bayes' rule: q(x_{t-1}) q(x_t | x_{t-1}) / q(x_t), for data on ``points``."""
    beta, alpha, abar, abar_prev = _coefs(betas)
    x = torch.linspace(-4, 4, n, **F64)
    prior = sum(w * torch.distributions.Normal(abar_prev[t].sqrt() * p, (1 - abar_prev[t]).sqrt()).log_prob(x).exp()
                for p, w in zip(points, weights))
    lik = torch.distributions.Normal(alpha[t].sqrt() * x, beta[t].sqrt()).log_prob(torch.tensor(xt, **F64)).exp()
    density = prior * lik
    return x, density / (density.sum() * (x[1] - x[0]))


def test_true_reverse_kernel_of_two_point_data_is_a_mixture_eq_two_point_reverse():
    """For data {-1, +1} the true q(x_{t-1} | x_t), by Bayes' rule on a grid, is the mixture of the posteriors
    q(x_{t-1} | x_t, x_0 = ±1) weighted by the responsibilities q(x_0 | x_t); with data {-1, +1} weighted 0.8/0.2
    the kernel at the same x_t differs (by at least 20% of its peak), while q(x_{t-1} | x_t, x_0) is the same
    function of the schedule."""
    betas = BETAS  # large steps (β up to 0.4), where the data visibly shape one reverse step
    schedule = schedule_from_betas(betas)
    _, _, abar, _ = _coefs(betas)
    t, xt = 5, 0.2  # code index 5 (β = 0.2): both points still plausible given x_t
    for weights in ((0.5, 0.5), (0.8, 0.2)):
        x, density = _grid_reverse_kernel((-1.0, 1.0), weights, t, xt, betas)
        lik_x0 = torch.tensor([torch.distributions.Normal(abar[t].sqrt() * p, (1 - abar[t]).sqrt())
                               .log_prob(torch.tensor(xt, **F64)).exp() * w for p, w in zip((-1.0, 1.0), weights)])
        resp = lik_x0 / lik_x0.sum()  # q(x_0 | x_t)
        mixture = 0
        for p, r in zip((-1.0, 1.0), resp):
            post = q_posterior(schedule, torch.tensor([[p]], **F64), torch.tensor([[xt]], **F64), torch.tensor([t]))
            mixture = mixture + r * torch.distributions.Normal(post.mean[0, 0], post.variance.reshape(-1)[0].double().sqrt()).log_prob(x).exp()
        torch.testing.assert_close(density, mixture, rtol=0, atol=2e-3 * density.max().item())
        if weights == (0.5, 0.5):
            balanced = density
    assert (balanced - density).abs().max() > 0.2 * density.max()  # the data changed the reverse kernel


@pytest.mark.parametrize("betas", [BETAS, LINEAR], ids=["short", "linear"])
def test_true_reverse_variance_is_beta_for_unit_gaussian_data_and_beta_tilde_for_a_point_eq_optimal_variance(betas):
    """Var(x_{t-1} | x_t) from the joint covariances (float64 loop): x_0 ~ N(0, 1) gives exactly β_t; x_0 a single
    point gives β̃_t, the package's posterior_variance (Ho et al. Sec. 3.2)."""
    beta, alpha, abar, abar_prev = _coefs(betas)
    schedule = schedule_from_betas(betas)
    for var0, expected in ((1.0, beta), (0.0, schedule.posterior_variance.double())):
        v_prev = abar_prev * var0 + 1 - abar_prev  # Var(x_{t-1})
        v_t = abar * var0 + 1 - abar  # Var(x_t)
        cov = alpha.sqrt() * v_prev
        true_var = v_prev - cov**2 / v_t
        torch.testing.assert_close(true_var[1:], expected[1:], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("betas", [BETAS, LINEAR], ids=["short", "linear"])
def test_variance_ratio_is_one_minus_alpha_bar_prev_over_one_minus_alpha_bar_eq_variance_ratio(betas):
    _, _, abar, abar_prev = _coefs(betas)
    schedule = schedule_from_betas(betas)
    ratio = schedule.posterior_variance.double() / schedule.betas.double()
    torch.testing.assert_close(ratio[1:], ((1 - abar_prev) / (1 - abar))[1:], rtol=1e-5, atol=0)
    assert ratio[0] == 0 and (ratio[1:] < 1).all()


def test_interpolated_log_variance_spans_beta_tilde_to_beta_eq_learned_variance():
    """v = 1 gives log β_t, v = 0 the clipped log β̃_t, v = ½ their geometric mean; monotone in v."""
    from ddpm_utils import interpolated_log_variance

    schedule = schedule_from_betas(LINEAR)
    beta, _, abar, abar_prev = _coefs(LINEAR)
    bt = beta * (1 - abar_prev) / (1 - abar)
    t = torch.tensor([0, 1, 10, 500, 999])
    ones = torch.ones(5, 3)
    torch.testing.assert_close(interpolated_log_variance(schedule, t, ones).double(),
                               beta[t].log()[:, None].expand(5, 3), rtol=1e-5, atol=1e-6)
    clipped = torch.where(t == 0, bt[1], bt[t]).log()
    torch.testing.assert_close(interpolated_log_variance(schedule, t, 0 * ones).double(),
                               clipped[:, None].expand(5, 3), rtol=1e-5, atol=1e-6)
    half = interpolated_log_variance(schedule, t, 0.5 * ones).double().exp()
    torch.testing.assert_close(half, (beta[t] * torch.where(t == 0, bt[1], bt[t])).sqrt()[:, None].expand(5, 3),
                               rtol=1e-5, atol=0)
    vs = torch.linspace(0, 1, 11)[:, None].expand(11, 1)
    values = interpolated_log_variance(schedule, torch.full((11,), 5), vs)[:, 0]
    assert (values.diff() > 0).all()
