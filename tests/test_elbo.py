"""Tests of chapter 2: the variational bound, its rearrangement and its weights.

Independent references: torch.distributions (Normal, MultivariateNormal and their KLs), scipy's
normal density, ᾱ from a Python loop in float64, exact joint Gaussians of short chains built here
as matrices, and Monte Carlo along forward chains. The data are 1-D Gaussians, for which the exact
ε* is linear and every likelihood is known.
"""

import math

import pytest
import torch
from scipy.stats import norm
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from ddpm_utils import (
    GaussianMixture,
    MixtureOracle,
    discretized_gaussian_log_likelihood,
    ddpm_sample,
    kl_weight,
    make_schedule,
    nll_bits_per_dim,
    normal_kl,
    p_mean_variance,
    q_posterior,
    q_sample,
    schedule_from_betas,
)
from ddpm_utils.losses import elbo_chain_form
from ddpm_utils.oracle import gaussian_data_bound
from reference import betas_from_alpha_bar, cosine_alpha_bar, linear_betas, loop_coefficients

LN2 = math.log(2.0)
MEAN, VAR = 0.3, 0.5  # the 1-D Gaussian data N(0.3, 0.5)
F64 = dict(dtype=torch.float64)


def gaussian(mean=MEAN, var=VAR):
    return GaussianMixture(torch.ones(1, **F64), torch.tensor([[mean]], **F64), torch.tensor([[var**0.5]], **F64))


def ref_coefs(betas):
    """β, α, ᾱ, ᾱ_{t-1} as float64 tensors indexed by code t (reference.loop_coefficients)."""
    return tuple(torch.tensor(c, dtype=torch.float64) for c in loop_coefficients(betas))


SCHEDULES = {
    "linear": linear_betas(1000),
    "cosine": betas_from_alpha_bar(cosine_alpha_bar, 1000),
}


def linear_step(model, schedule, t, variance):
    """The model's reverse step as x ↦ A x + b and σ² = exp(log σ²) (clipped at t = 0), by probing two points."""
    x = torch.tensor([[0.0], [1.0]], **F64)
    step = p_mean_variance(model, schedule, x, torch.full((2,), t), variance=variance)
    b = step.mean[0, 0].double()
    return (step.mean[1, 0].double() - b), b, step.log_variance.reshape(-1)[0].double().exp()


def test_forward_step_factorises_by_bayes_given_x0_eq_markov_bayes():
    """q(x_t | x_{t-1}) = q(x_{t-1} | x_t, x_0) q(x_t | x_0) / q(x_{t-1} | x_0) for t ≥ 2, every factor a
    torch.distributions.Normal density at points drawn along forward chains; the posterior from
    q_posterior, the others from ᾱ computed by a loop."""
    betas = SCHEDULES["linear"]
    schedule = schedule_from_betas(betas)
    beta, alpha, abar, abar_prev = ref_coefs(betas)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=g, **F64) * 0.7
    for t in (1, 2, 10, 500, 999):  # code index; paper t = 2, 3, 11, 501, 1000
        x_prev = abar_prev[t].sqrt() * x0 + (1 - abar_prev[t]).sqrt() * torch.randn(x0.shape, generator=g, **F64)
        xt = alpha[t].sqrt() * x_prev + beta[t].sqrt() * torch.randn(x0.shape, generator=g, **F64)
        lhs = Normal(alpha[t].sqrt() * x_prev, beta[t].sqrt()).log_prob(xt)
        post = q_posterior(schedule, x0.float(), xt.float(), torch.full((64,), t))
        rhs = (
            Normal(post.mean.double(), post.variance.double().sqrt()).log_prob(x_prev)
            + Normal(abar[t].sqrt() * x0, (1 - abar[t]).sqrt()).log_prob(xt)
            - Normal(abar_prev[t].sqrt() * x0, (1 - abar_prev[t]).sqrt()).log_prob(x_prev)
        )
        torch.testing.assert_close(rhs, lhs, rtol=0, atol=2e-3 * lhs.abs().max().item())


def test_bound_minus_exact_nll_is_the_posterior_kl_eq_elbo_gap():
    """L(x_0) = -log p_θ(x_0) + KL(q(x_{1:T} | x_0) ‖ p_θ(x_{1:T} | x_0)) on a T = 5 chain. Both joint
    laws are built here as 6-dim Gaussians: q from the forward recursion, p_θ from N(0, 1) pushed through
    the oracle's reverse steps (each probed as x ↦ A x + b); p_θ(x_{1:T} | x_0) by Gaussian conditioning;
    the KL by torch.distributions. The bound comes from gaussian_data_bound."""
    betas = [0.05, 0.1, 0.2, 0.3, 0.4]
    schedule = schedule_from_betas(betas)
    beta, alpha, _, _ = ref_coefs(betas)
    oracle = MixtureOracle(gaussian(), schedule)
    x0 = torch.tensor([-1.0, 0.0, 0.3, 1.5], **F64)
    for variance in ("beta_tilde", "beta"):
        # p_θ: x_T = z_T; x_{k} = A_k x_{k+1} + b_k + σ_k z_k, k = T-1 … 0 (paper x_k from x_{k+1})
        n = len(betas) + 1  # x_0 … x_T
        L = torch.zeros(n, n, **F64)  # x = mu + L z, z ~ N(0, I_n)
        mu = torch.zeros(n, **F64)
        L[n - 1, n - 1] = 1.0
        for k in range(n - 2, -1, -1):
            a, b, s2 = linear_step(oracle, schedule, k, variance)
            mu[k] = a * mu[k + 1] + b
            L[k] = a * L[k + 1]
            L[k, k] = s2.sqrt()
        cov = L @ L.T
        nll = -Normal(mu[0], cov[0, 0].sqrt()).log_prob(x0)
        gain = cov[1:, 0] / cov[0, 0]  # p_θ(x_{1:T} | x_0): conditioning on the first coordinate
        p_cov = cov[1:, 1:] - torch.outer(cov[1:, 0], cov[0, 1:]) / cov[0, 0]
        # q(x_{1:T} | x_0): x_k = √α_k x_{k-1} + √β_k z_k
        Lq = torch.zeros(n - 1, n - 1, **F64)
        scale = torch.ones(n - 1, **F64)  # coefficient of x_0 in x_k
        for k in range(n - 1):
            prev_row = Lq[k - 1] if k > 0 else torch.zeros(n - 1, **F64)
            Lq[k] = alpha[k].sqrt() * prev_row
            Lq[k, k] = beta[k].sqrt()
            scale[k] = alpha[k].sqrt() * (scale[k - 1] if k > 0 else 1.0)
        q_cov = Lq @ Lq.T
        bound = gaussian_data_bound(schedule, MEAN, VAR, variance, x0=x0).total
        for i, x in enumerate(x0):
            q = MultivariateNormal(scale * x, q_cov)
            p = MultivariateNormal(mu[1:] + gain * (x - mu[0]), p_cov)
            expected = nll[i] + kl_divergence(q, p)
            torch.testing.assert_close(bound[i], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_bound_is_above_the_exact_nll_and_the_data_entropy_eq_elbo(kind):
    """H(q(x_0)) ≤ E[-log p_θ(x_0)] ≤ E[L] for the exact ε*, T = 1000, and -log p_θ(x_0) ≤ L(x_0) for each
    x_0. The model's marginal p_θ(x_0) is checked against 40,000 ancestral samples of the DDPM sampler
    (mean and variance within 5 standard errors)."""
    schedule = schedule_from_betas(SCHEDULES[kind])
    x0 = torch.linspace(-2, 2.5, 10, **F64)
    for variance in ("beta_tilde", "beta"):
        avg = gaussian_data_bound(schedule, MEAN, VAR, variance)
        per = gaussian_data_bound(schedule, MEAN, VAR, variance, x0=x0)
        assert avg.entropy <= avg.model_nll <= avg.total
        assert (per.model_nll <= per.total).all()
    # the marginal of the reverse chain, σ² = β (the closer one), by sampling it
    oracle = MixtureOracle(gaussian(), schedule)
    xT = torch.randn(40_000, 1, generator=torch.Generator().manual_seed(1), **F64)
    samples = ddpm_sample(oracle, schedule, xT, variance="beta", generator=torch.Generator().manual_seed(2))[:, 0]
    m, v = samples.mean(), samples.var()
    se_m, se_v = (v / len(samples)).sqrt(), v * math.sqrt(2 / len(samples))
    probe = torch.linspace(-1.5, 2.0, 8, **F64)
    nll = gaussian_data_bound(schedule, MEAN, VAR, "beta", x0=probe).model_nll

    def gaussian_nll(mean, var):
        return 0.5 * torch.log(2 * math.pi * var) + (probe - mean) ** 2 / (2 * var)

    sampled = gaussian_nll(m, v)
    spread = torch.stack([gaussian_nll(m + dm, v + dv) - sampled for dm in (-5 * se_m, 5 * se_m)
                          for dv in (-5 * se_v, 5 * se_v)]).abs().amax(0)
    assert ((nll - sampled).abs() <= spread).all(), (nll, sampled, spread)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_rearranged_bound_equals_the_chain_form_by_monte_carlo_eq_bound_terms(variance):
    """The bound in the form of Ho et al. Eq. 3, scored along 4,000 forward chains (elbo_chain_form: no
    Bayes' rule, no closed-form KL), has the mean of the rearranged terms, computed exactly by
    gaussian_data_bound (within 4 standard errors). And term by term, the closed-form KL given x_t has
    a smaller variance than the Monte Carlo log-ratio of the same term at a drawn x_{t-1}."""
    schedule = make_schedule("linear")
    data = gaussian()
    oracle = MixtureOracle(data, schedule)
    g = torch.Generator().manual_seed(3)
    x0 = data.sample(4000, g)  # (N, 1)
    chain = elbo_chain_form(oracle, schedule, x0, variance=variance, generator=g).double() * LN2
    exact = gaussian_data_bound(schedule, MEAN, VAR, variance).total
    se = chain.std() / math.sqrt(len(chain))
    assert abs(chain.mean() - exact) < 4 * se, (chain.mean().item(), exact.item(), se.item())
    for t in (1, 50, 900):
        tt = torch.full((len(x0),), t)
        xt = q_sample(schedule, x0, tt, generator=g)
        post = q_posterior(schedule, x0, xt, tt)
        step = p_mean_variance(oracle, schedule, xt, tt, variance=variance)
        closed = normal_kl(post.mean, post.log_variance, step.mean, step.log_variance)[:, 0]
        x_prev = post.mean + post.variance.sqrt() * torch.randn(x0.shape, generator=g, **F64)
        ratio = (Normal(post.mean, post.variance.sqrt()).log_prob(x_prev)
                 - Normal(step.mean, step.variance.sqrt()).log_prob(x_prev))[:, 0]
        se_diff = ((closed.var() + ratio.var()) / len(x0)).sqrt()
        assert abs(closed.mean() - ratio.mean()) < 4 * se_diff
        assert closed.var() < ratio.var()


def test_exact_gaussian_terms_match_monte_carlo_kl_terms_eq_bound_terms():
    """gaussian_data_bound's L_T, Σ L_{t-1} and L_0 against nll_bits_per_dim with the exact oracle and the
    continuous decoder on 4,000 draws of the data (each term by Monte Carlo over x_0 and x_t)."""
    schedule = make_schedule("cosine")
    data = gaussian()
    g = torch.Generator().manual_seed(4)
    x0 = data.sample(4000, g)
    for variance in ("beta_tilde", "beta"):
        exact = gaussian_data_bound(schedule, MEAN, VAR, variance)
        vlb = nll_bits_per_dim(MixtureOracle(data, schedule), schedule, x0, variance=variance,
                               generator=g, decoder="continuous", max_batch=400_000)
        for mc, value in ((vlb.kl.double().sum(1), exact.kl.sum()), (vlb.decoder.double(), exact.decoder),
                          (vlb.prior.double(), exact.prior), (vlb.total.double(), exact.total)):
            mc = mc * LN2
            se = max(mc.std().item() / math.sqrt(len(mc)), 1e-9)
            assert abs(mc.mean().item() - value.item()) < 4 * se + 1e-6, (variance, mc.mean().item(), value.item(), se)
        # a few single terms, each a mean over 4,000 examples
        for t in (1, 10, 500, 998):
            mc = vlb.kl[:, t - 1].double() * LN2
            se = mc.std().item() / math.sqrt(len(mc))
            assert abs(mc.mean().item() - exact.kl[t - 1].item()) < 4 * se + 1e-7


@pytest.mark.parametrize("kind", SCHEDULES)
def test_bound_exceeds_the_data_entropy_by_the_reverse_step_kls_eq_gap_decomposition(kind):
    """E[L] = H(q(x_0)) + KL(q(x_T) ‖ N(0, 1)) + Σ_t E KL(q(x_{t-1} | x_t) ‖ p_θ(x_{t-1} | x_t)). The true
    reverse kernel comes from the joint covariance of (x_{t-1}, x_t): Var(x_{t-1} | x_t) =
    Var(x_{t-1}) - Cov²/Var(x_t), Cov = √α_t Var(x_{t-1}); its mean is checked against the oracle's
    model mean at random points; H = ½ log(2πe s²); the bound from gaussian_data_bound."""
    betas = SCHEDULES[kind]
    schedule = schedule_from_betas(betas)
    beta, alpha, abar, abar_prev = ref_coefs(betas)
    oracle = MixtureOracle(gaussian(), schedule)
    var_t = abar * VAR + 1 - abar  # Var(x_t), code index t (paper t + 1)
    var_prev = abar_prev * VAR + 1 - abar_prev  # Var(x_{t-1}); index 0: the data's variance
    cov = alpha.sqrt() * var_prev
    true_var = var_prev - cov**2 / var_t
    x = torch.linspace(-3, 3, 7, **F64)[:, None]
    for variance in ("beta_tilde", "beta"):
        kls = []
        for t in range(len(betas)):
            a, b, s2 = linear_step(oracle, schedule, t, variance)
            mean_model = a * x + b
            mean_true = abar_prev[t].sqrt() * MEAN + cov[t] / var_t[t] * (x - abar[t].sqrt() * MEAN)
            torch.testing.assert_close(mean_model, mean_true, rtol=1e-4, atol=1e-5)
            kls.append(kl_divergence(Normal(0.0, true_var[t].sqrt()), Normal(0.0, s2.sqrt())))
        kls = torch.stack(kls)
        prior_kl = kl_divergence(Normal(abar[-1].sqrt() * MEAN, var_t[-1].sqrt()), Normal(0.0, 1.0))
        entropy = Normal(0.0, VAR**0.5).entropy().double()
        bound = gaussian_data_bound(schedule, MEAN, VAR, variance)
        torch.testing.assert_close(bound.step_kl, kls, rtol=2e-4, atol=1e-7)
        torch.testing.assert_close(bound.total, entropy + prior_kl + kls.sum(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_kl_constant_is_zero_only_when_sigma2_is_beta_tilde_eq_kl_constant(kind):
    """KL(N(μ̃, β̃ I) ‖ N(μ_θ, σ² I)) by torch.distributions, summed over D = 6 coordinates, minus
    λ_t ‖ε - ε̂‖², is D/2 (β̃/σ² - 1 - log β̃/σ²): zero for σ² = β̃, positive for σ² = β."""
    betas = SCHEDULES[kind]
    schedule = schedule_from_betas(betas)
    beta, alpha, abar, abar_prev = ref_coefs(betas)
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([1, 2, 10, 100, 500, 990])
    x0 = torch.rand(6, 6, generator=g) * 2 - 1
    eps = torch.randn(6, 6, generator=g)
    delta = 0.1 * torch.randn(6, 6, generator=g)
    xt = q_sample(schedule, x0, t, eps)
    bt = beta[t] * (1 - abar_prev[t]) / (1 - abar[t])
    for variance, sigma2 in (("beta_tilde", bt), ("beta", beta[t])):
        step = p_mean_variance(lambda x, s: eps + delta, schedule, xt, t, variance=variance)
        post = q_posterior(schedule, x0, xt, t)
        kl = kl_divergence(Normal(post.mean.double(), bt.sqrt()[:, None]),
                           Normal(step.mean.double(), sigma2.sqrt()[:, None])).sum(1)
        constant = kl - kl_weight(schedule, t, variance).double() * (delta.double() ** 2).sum(1)
        u = bt / sigma2
        torch.testing.assert_close(constant, 6 / 2 * (u - 1 - u.log()), rtol=2e-3, atol=2e-5)
        if variance == "beta":
            assert (constant > 0).all()


def test_alpha_times_one_minus_alpha_bar_prev_plus_beta_is_one_minus_alpha_bar_eq_mean_identity():
    """α_t (1 - ᾱ_{t-1}) + β_t = 1 - ᾱ_t with ᾱ from a loop, and the package's ε-form of the posterior
    mean, which rests on it: μ̃_t(x_t, x_0(ε)) = (x_t - β_t/√(1-ᾱ_t) ε)/√α_t."""
    for kind, betas in SCHEDULES.items():
        beta, alpha, abar, abar_prev = ref_coefs(betas)
        torch.testing.assert_close(alpha * (1 - abar_prev) + beta, 1 - abar, rtol=1e-12, atol=1e-15)
        schedule = schedule_from_betas(betas)
        t = torch.tensor([0, 1, 300, 998])
        eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(6))
        x0 = torch.rand(4, 3, generator=torch.Generator().manual_seed(7)) * 2 - 1
        xt = q_sample(schedule, x0, t, eps)
        col = lambda v: v[t].float()[:, None]  # noqa: E731
        expected = (xt - col(beta) / col((1 - abar).sqrt()) * eps) / col(alpha.sqrt())
        torch.testing.assert_close(q_posterior(schedule, x0, xt, t).mean, expected, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_kl_weight_for_sigma2_beta_eq_kl_weight_beta(kind):
    """λ_t = β_t / (2 α_t (1 - ᾱ_t)) for σ² = β, with ᾱ from a loop, at every t ≥ 2."""
    beta, alpha, abar, _ = ref_coefs(SCHEDULES[kind])
    t = torch.arange(1, 1000)
    lam = kl_weight(schedule_from_betas(SCHEDULES[kind]), t, "beta").double()
    torch.testing.assert_close(lam, beta[t] / (2 * alpha[t] * (1 - abar[t])), rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_kl_weight_for_beta_tilde_is_half_snr_ratio_minus_one_eq_kl_weight_snr(kind):
    """λ_t = ½ (SNR(t-1)/SNR(t) - 1) for σ² = β̃, SNR = ᾱ/(1-ᾱ) from a loop, at every t ≥ 2 (at t = 1
    SNR(0) = ∞; test_losses checks that kl_weight refuses that index)."""
    _, _, abar, abar_prev = ref_coefs(SCHEDULES[kind])
    snr, snr_prev = abar / (1 - abar), abar_prev[1:] / (1 - abar_prev[1:])
    t = torch.arange(1, 1000)
    lam = kl_weight(schedule_from_betas(SCHEDULES[kind]), t, "beta_tilde").double()
    torch.testing.assert_close(lam, 0.5 * (snr_prev / snr[1:] - 1), rtol=1e-4, atol=0)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_x0_error_weight_is_half_snr_difference_eq_kl_weight_x0(kind):
    """For an x_0-predicting model off by δ and σ² = β̃, KL(q(x_{t-1}|x_t,x_0) ‖ p_θ) by torch.distributions
    (summed over D = 4) is ½ (SNR(t-1) - SNR(t)) ‖δ‖², SNR from a loop."""
    betas = SCHEDULES[kind]
    schedule = schedule_from_betas(betas)
    beta, _, abar, abar_prev = ref_coefs(betas)
    t = torch.tensor([1, 5, 50, 400, 900])
    g = torch.Generator().manual_seed(8)
    x0 = torch.rand(5, 4, generator=g, **F64) * 2 - 1  # float64: at t = 900, μ̃ - μ_θ is 1e-6 of x_t
    delta = 0.05 * torch.randn(5, 4, generator=g, **F64)
    xt = q_sample(schedule, x0, t, torch.randn(5, 4, generator=g, **F64))
    step = p_mean_variance(lambda x, s: x0 + delta, schedule, xt, t, target="x0")
    post = q_posterior(schedule, x0, xt, t)
    bt = (beta[t] * (1 - abar_prev[t]) / (1 - abar[t])).sqrt()[:, None]
    kl = kl_divergence(Normal(post.mean.double(), bt), Normal(step.mean.double(), bt)).sum(1)
    snr = lambda a: a / (1 - a)  # noqa: E731
    expected = 0.5 * (snr(abar_prev[t]) - snr(abar[t])) * (delta.double() ** 2).sum(1)
    torch.testing.assert_close(kl, expected, rtol=1e-5, atol=0)


def test_decoder_of_a_wide_gaussian_is_density_times_bin_width_eq_bits_per_dim():
    """When σ is wide against the bin width 2/255, -log₂ P(bin) = -log₂ p(x) + log₂ 127.5 (to the bin's
    second-order term): the 8-bit offset between discrete and continuous bits/dim, with scipy's density."""
    x = -1 + 2 * torch.arange(20, 236, 7, **F64) / 255  # interior levels
    mean, std = 0.1, 0.3
    log_p = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, 2 * math.log(std)))
    bits = -log_p / LN2
    density_bits = torch.tensor(-norm.logpdf(x.numpy(), mean, std) / LN2)
    torch.testing.assert_close(bits, density_bits + math.log2(127.5), rtol=0, atol=2e-3)
    # and in the other limit, a σ far narrower than a bin, the bin holds all the mass: 0 bits
    narrow = discretized_gaussian_log_likelihood(x, x.clone(), torch.full_like(x, 2 * math.log(1e-4)))
    assert (-narrow / LN2).abs().max() < 1e-9
