"""Tests of ddpm_utils.reverse and ddpm_utils.losses: the reverse step, the Gaussian KL, the
discretised decoder and the variational bound in bits per dimension.

Independent references: torch.distributions for every KL and CDF, numerical integration for
far-tail bins, and ᾱ from a Python loop over hand-written betas, in float64.
"""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm_utils import (
    discretized_gaussian_log_likelihood,
    kl_weight,
    l_simple,
    make_schedule,
    mean_flat,
    nll_bits_per_dim,
    normal_kl,
    p_mean_variance,
    prior_bpd,
    reverse_variance,
    schedule_from_betas,
)
from reference import betas_from_alpha_bar, cosine_alpha_bar, loop_alpha_bars, loop_coefficients

LN2 = math.log(2.0)
T = 1000
BETAS = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]  # Ho et al. Sec. 4


def coefs(betas):
    """β, α, ᾱ, ᾱ_{t-1} as float64 tensors indexed by code t (reference.loop_coefficients)."""
    return tuple(torch.tensor(c, dtype=torch.float64) for c in loop_coefficients(betas))


BETA, ALPHA, ABAR, ABAR_PREV = coefs(BETAS)


@pytest.fixture(scope="module")
def schedule():
    return schedule_from_betas(BETAS)


def col(v, ndim):
    return v.reshape((-1,) + (1,) * (ndim - 1))


def some_eps_model(xt, t):
    """An arbitrary deterministic ε-predictor: depends on x_t and on t."""
    return torch.sin(3 * xt) + col(t.to(xt.dtype) / T, xt.ndim) * xt**2


def grid_256(dtype=torch.float64):
    return -1 + 2 * torch.arange(256, dtype=dtype) / 255


# --- reverse step -----------------------------------------------------------------------------


def test_reverse_mean_equals_ho_eq11_for_an_eps_model_eq_reverse_mean_eps(schedule):
    """Book Eq. (reverse-mean-eps), Ho et al. Eq. 11: μ_θ = 1/√α_t (x_t - β_t/√(1-ᾱ_t) ε_θ).

    The package computes μ_θ as the posterior mean at x̂_0; retyping Eq. 11 is the independent route.
    """
    xt = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 500, 998, 999])
    step = p_mean_variance(some_eps_model, schedule, xt, t)
    eps = some_eps_model(xt, t).double()
    expected = (xt.double() - col(BETA[t] / (1 - ABAR[t]).sqrt(), 4) * eps) / col(ALPHA[t].sqrt(), 4)
    torch.testing.assert_close(step.mean.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(step.eps, some_eps_model(xt, t))


@pytest.mark.parametrize("target", ["x0", "v"])
def test_reverse_mean_is_the_same_for_x0_and_v_models_that_encode_the_same_eps(schedule, target):
    """Ho et al. Eq. 11 through the other targets: same ε_θ, same μ_θ."""
    xt = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    t = torch.randint(1, T, (64,), generator=torch.Generator().manual_seed(2))
    a, s = col(ABAR[t].sqrt(), 2), col((1 - ABAR[t]).sqrt(), 2)

    def other_model(x, tt):
        eps = some_eps_model(x, tt).double()
        x0 = (x.double() - s * eps) / a
        return (x0 if target == "x0" else a * eps - s * x0).float()

    ref = p_mean_variance(some_eps_model, schedule, xt, t)
    got = p_mean_variance(other_model, schedule, xt, t, target=target)
    torch.testing.assert_close(got.mean, ref.mean, rtol=1e-4, atol=1e-4)


def test_reverse_variance_is_beta_tilde_or_beta_eq_reverse_variance(schedule):
    """Book Eq. (reverse-variance), Ho et al. Sec. 3.2: σ_t² = β̃_t = β_t (1-ᾱ_{t-1})/(1-ᾱ_t) or β_t."""
    t = torch.tensor([1, 2, 500, 999])
    x = torch.zeros(4, 5)
    var, log_var = reverse_variance(schedule, t, x, "beta_tilde")
    beta_tilde = BETA[t] * (1 - ABAR_PREV[t]) / (1 - ABAR[t])
    torch.testing.assert_close(var.flatten().double(), beta_tilde, rtol=1e-6, atol=0)
    torch.testing.assert_close(log_var.flatten().double(), beta_tilde.log(), rtol=0, atol=1e-6)
    var, log_var = reverse_variance(schedule, t, x, "beta")
    torch.testing.assert_close(var.flatten().double(), BETA[t], rtol=1e-6, atol=0)
    torch.testing.assert_close(log_var.flatten().double(), BETA[t].log(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown reverse variance"):
        reverse_variance(schedule, t, x, "learned")


def eps_error_gains(betas):
    """Per code t, from a float64 loop: the gain of an ε̂ error on x_{t-1}, β_t/(√α_t √(1-ᾱ_t)), and on
    x̂_0, √(1-ᾱ_t)/√ᾱ_t (Eqs. (eps-error-gain) and (x0-from-eps))."""
    abar = loop_alpha_bars(betas)
    on_x_prev = [b / math.sqrt((1 - b) * (1 - a)) for b, a in zip(betas, abar)]
    on_x0 = [math.sqrt((1 - a) / a) for a in abar]
    return torch.tensor(on_x_prev, dtype=torch.float64), torch.tensor(on_x0, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_eps_error_reaches_x_prev_with_gain_beta_over_sqrt_alpha_sqrt_one_minus_alpha_bar_eq_eps_error_gain(kind):
    """Book Eq. (eps-error-gain): with ε-prediction and no clipping, an error δ in ε̂ moves the reverse
    mean (so x_{t-1}) by -β_t/(√α_t √(1-ᾱ_t)) δ and x̂_0 by -√(1-ᾱ_t)/√ᾱ_t δ.

    Autograd through the package's p_mean_variance with respect to the model output, at every t of
    the T = 1000 schedule, against gains from betas computed here (float64 loop). Top step: 0.0202 for
    the linear schedule, 31.59 for the cosine one (β_T clipped to 0.999, so √α_T = 0.0316). With
    clip_x0=True the gain is 0 wherever x̂_0 falls outside [-1, 1] and unchanged inside it.
    """
    betas = BETAS if kind == "linear" else betas_from_alpha_bar(cosine_alpha_bar, T)
    gain, gain_x0 = eps_error_gains(betas)
    assert gain[-1].item() == (pytest.approx(0.0202, abs=5e-5) if kind == "linear" else pytest.approx(31.59, abs=0.01))
    schedule = make_schedule(kind, T=T)
    g = torch.Generator().manual_seed(20)
    t = torch.arange(T)
    xt = torch.randn(T, 3, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(T, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    step = p_mean_variance(lambda x, tt: eps_hat, schedule, xt, t)
    (d_mean,) = torch.autograd.grad(step.mean.sum(), eps_hat, retain_graph=True)  # elementwise: the diagonal
    (d_x0,) = torch.autograd.grad(step.x0.sum(), eps_hat)
    torch.testing.assert_close(d_mean, -col(gain, 2).expand(T, 3), rtol=1e-5, atol=0)
    torch.testing.assert_close(d_x0, -col(gain_x0, 2).expand(T, 3), rtol=1e-5, atol=0)

    # clipping: x_t built so that the unclipped x̂_0 is 1.5, -2, 0.5 in the three coordinates
    abar = torch.tensor(loop_alpha_bars(betas), dtype=torch.float64)
    target_x0 = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64).expand(T, 3)
    eps_fixed = eps_hat.detach()
    xt = col(abar.sqrt(), 2) * target_x0 + col((1 - abar).sqrt(), 2) * eps_fixed
    eps_hat = eps_fixed.clone().requires_grad_(True)
    step = p_mean_variance(lambda x, tt: eps_hat, schedule, xt, t, clip_x0=True)
    assert (step.x0[:, :2].abs() == torch.tensor([1.0, 1.0], dtype=torch.float64)).all()
    (d_mean,) = torch.autograd.grad(step.mean.sum(), eps_hat)
    assert (d_mean[:, :2] == 0).all()
    torch.testing.assert_close(d_mean[:, 2], -gain, rtol=1e-5, atol=0)


# --- Gaussian KL and the KL weight ----------------------------------------------------------


def test_normal_kl_matches_torch_distributions_eq_gaussian_kl():
    """Book Eq. (gaussian-kl): ½(log σ₂²/σ₁² + σ₁²/σ₂² + (μ₁-μ₂)²/σ₂² - 1)."""
    g = torch.Generator().manual_seed(3)
    m1, m2 = torch.randn(1000, generator=g, dtype=torch.float64), torch.randn(1000, generator=g, dtype=torch.float64)
    lv1, lv2 = 3 * torch.randn(1000, generator=g, dtype=torch.float64), 3 * torch.randn(1000, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-12


def kl_by_distributions(x0, eps, eps_pred, t, variance):
    """Σ_d KL(q(x_{t-1}|x_t,x_0) ‖ p_θ(x_{t-1}|x_t)) with torch.distributions, float64.

    The posterior comes from the product of the two forward Gaussians (precision-weighted), the
    model mean from Ho et al. Eq. 11; ``t`` is a code index ≥ 1.
    """
    a, s = col(ABAR[t].sqrt(), 2), col((1 - ABAR[t]).sqrt(), 2)
    xt = a * x0 + s * eps
    prec = 1 / (1 - col(ABAR_PREV[t], 2)) + col(ALPHA[t] / BETA[t], 2)
    post_var = 1 / prec
    post_mean = post_var * (col(ABAR_PREV[t].sqrt(), 2) * x0 / (1 - col(ABAR_PREV[t], 2)) + col(ALPHA[t].sqrt() / BETA[t], 2) * xt)
    model_mean = (xt - col(BETA[t], 2) / s * eps_pred) / col(ALPHA[t].sqrt(), 2)
    sigma2 = post_var if variance == "beta_tilde" else col(BETA[t], 2)
    kl = kl_divergence(Normal(post_mean, post_var.sqrt()), Normal(model_mean, sigma2.sqrt())).sum(-1)
    mismatch = kl_divergence(Normal(0.0, post_var.sqrt()), Normal(0.0, sigma2.sqrt())).flatten()  # per dim
    return kl, mismatch


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_kl_weight_times_squared_eps_error_is_the_gaussian_kl_eq_kl_weight_ho_eq12(schedule, variance):
    """Book Eq. (kl-weight), Ho et al. Eq. 12: L_{t-1} = λ_t ‖ε - ε_θ‖² + C, λ_t = β_t²/(2σ_t² α_t (1-ᾱ_t)).

    C = 0 for σ_t² = β̃_t; for σ_t² = β_t, C is D · KL(N(0, β̃_t) ‖ N(0, β_t)), whatever ε_θ is.
    Timesteps away from t ≈ 0, where 1-ᾱ_t is tiny (see the next test).
    """
    D = 6
    g = torch.Generator().manual_seed(4)
    t = torch.tensor([50, 51, 200, 500, 998, 999])
    x0, eps = torch.randn(6, D, generator=g, dtype=torch.float64), torch.randn(6, D, generator=g, dtype=torch.float64)
    eps_pred = eps + 0.3 * torch.randn(6, D, generator=g, dtype=torch.float64)
    kl, mismatch = kl_by_distributions(x0, eps, eps_pred, t, variance)
    lam = kl_weight(schedule, t, variance).double()
    torch.testing.assert_close(lam * ((eps - eps_pred) ** 2).sum(-1) + D * mismatch, kl, rtol=1e-5, atol=1e-9)
    assert (mismatch == 0).all() if variance == "beta_tilde" else (mismatch > 0).all()


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_kl_weight_is_accurate_at_the_first_steps_eq_kl_weight(schedule, variance):
    """Eq. (kl-weight) at code t = 1, 2, 3, 5 (paper 2, 3, 4, 6) of the book's schedule, where
    1-ᾱ_t ≈ 2e-4 … 6e-4 must not be formed as 1 - float32(ᾱ_t) (that alone costs ~1e-4 relative).
    float32 storage of accurate coefficients allows ~1e-7; rtol 1e-5 leaves a wide margin."""
    t = torch.tensor([1, 2, 3, 5])
    sigma2 = BETA[t] * (1 - ABAR_PREV[t]) / (1 - ABAR[t]) if variance == "beta_tilde" else BETA[t]
    lam = BETA[t] ** 2 / (2 * sigma2 * ALPHA[t] * (1 - ABAR[t]))
    torch.testing.assert_close(kl_weight(schedule, t, variance).double(), lam, rtol=1e-5, atol=0)


def test_kl_weight_rejects_t_0_the_decoder_term(schedule):
    with pytest.raises(ValueError, match="t >= 1"):
        kl_weight(schedule, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        kl_weight(schedule, torch.tensor([1000]))


# --- discretised decoder (Ho et al. Eq. 13) ---------------------------------------------------


@pytest.mark.parametrize("mean", [-1.2, -0.3, 0.0, 0.999, 1.1])
@pytest.mark.parametrize("std", [0.001, 0.02, 0.3, 2.0])
def test_decoder_probabilities_over_256_bins_sum_to_one_ho_eq13(mean, std):
    """Ho et al. Eq. 13: the 256 bins tile the real line, so Σ_bins p = 1 (logsumexp ≈ 0)."""
    x = grid_256()
    mean_t, log_var = torch.full_like(x, mean), torch.full_like(x, 2 * math.log(std))
    log_p = discretized_gaussian_log_likelihood(x, mean_t, log_var)
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-9
    log_p32 = discretized_gaussian_log_likelihood(x.float(), mean_t.float(), log_var.float())
    assert abs(torch.logsumexp(log_p32, 0).item()) < 1e-4  # float32 CDFs: ~1e-7 per bin


@pytest.mark.parametrize("i, mean, std", [(130, 0.05, 0.1), (100, -0.2, 0.03), (128, 0.0, 1.0)])
def test_decoder_middle_bin_is_cdf_difference_ho_eq13(i, mean, std):
    """A middle bin: p = Φ((x+1/255-μ)/σ) - Φ((x-1/255-μ)/σ), via torch.distributions in float64."""
    x = grid_256()[i : i + 1]
    d = Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    expected = torch.log(d.cdf(x + 1 / 255) - d.cdf(x - 1 / 255))
    log_var = torch.full_like(x, 2 * math.log(std))
    got = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), log_var)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    got32 = discretized_gaussian_log_likelihood(x.float(), torch.full_like(x, mean).float(), log_var.float())
    torch.testing.assert_close(got32.double(), expected, rtol=0, atol=1e-4)


def bin_probability_by_simpson(x, mean, std, n=2001):
    """∫ N(y; μ, σ²) dy over the bin [x - 1/255, x + 1/255], Simpson's rule in float64."""
    nodes = torch.linspace(x - 1 / 255, x + 1 / 255, n, dtype=torch.float64)
    pdf = torch.exp(Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)).log_prob(nodes))
    w = torch.ones(n, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return ((w * pdf).sum() * (nodes[1] - nodes[0]) / 3).item()


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-6), (torch.float32, 1e-3)], ids=["float64", "float32"])
@pytest.mark.parametrize("i", [153, 160, 166, 96, 89])  # about +4, +5, +6, -5, -6 σ from μ = 0, σ = 0.05
def test_decoder_tail_bins_match_numerical_integration_ho_eq13(i, dtype, atol):
    """Bins 4–6σ from μ, where Φ(u) - Φ(l) cancels (both ≈ 1 above μ, both ≈ 0 below it).
    Reference: ∫ pdf over the bin by Simpson's rule. p is 1e-5 … 1e-10, far above the 1e-12
    floor of the decoder. Tolerance on log p: 1e-6 in float64; 1e-3 (0.1 % of p) in float32,
    about a thousand times what float32 arithmetic needs (log_ndtr is accurate there)."""
    x, mean, std = grid_256()[i].item(), 0.0, 0.05
    one = torch.tensor([x], dtype=dtype)
    got = discretized_gaussian_log_likelihood(one, torch.zeros_like(one), torch.full_like(one, 2 * math.log(std)))
    assert got.item() == pytest.approx(math.log(bin_probability_by_simpson(x, mean, std)), abs=atol)


def test_decoder_edge_bins_extend_to_infinity_ho_eq13():
    """x = -1 takes all mass below -1+1/255; x = +1 all mass above 1-1/255."""
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    mean, std = torch.tensor([-0.9, 0.9], dtype=torch.float64), torch.tensor([0.1, 0.1], dtype=torch.float64)
    d = Normal(mean, std)
    edges = torch.tensor([-1 + 1 / 255, 1 - 1 / 255], dtype=torch.float64)
    expected = torch.log(torch.stack([d.cdf(edges)[0], 1 - d.cdf(edges)[1]]))
    got = discretized_gaussian_log_likelihood(x, mean, 2 * std.log())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_decoder_rejects_data_outside_minus1_1_and_shape_mismatch():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        discretized_gaussian_log_likelihood(torch.tensor([0.0, 1.01]), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        discretized_gaussian_log_likelihood(torch.tensor([-1.5]), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="x0 has shape"):
        discretized_gaussian_log_likelihood(torch.zeros(2), torch.zeros(3), torch.zeros(3))


# --- prior term L_T -------------------------------------------------------------------------


def prior_by_distributions(x0, abar_T):
    """KL(N(√ᾱ_T x_0, 1-ᾱ_T) ‖ N(0, 1)), averaged over dimensions, in bits, float64."""
    q = Normal(math.sqrt(abar_T) * x0.double(), math.sqrt(1 - abar_T))
    return kl_divergence(q, Normal(0.0, 1.0)).flatten(1).mean(1) / LN2


def test_prior_term_of_linear_T1000_schedule_is_about_1e5_bits_per_dim(schedule):
    """Ho et al. Sec. 4 / Table 2: L_T ≈ 1.0e-5 bits/dim on CIFAR-10; here 8-bit data uniform on
    the grid in [-1, 1] (E x² ≈ 1/3). Float64 data: matches the closed form to 1e-5."""
    g = torch.Generator().manual_seed(5)
    x0 = (torch.randint(0, 256, (8, 3, 16, 16), generator=g).double() / 127.5 - 1)
    expected = prior_by_distributions(x0, ABAR[-1].item())
    got = prior_bpd(schedule, x0)
    assert got.shape == (8,)
    assert (got > 0).all() and (got < 2e-5).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)


def test_prior_term_in_float32_is_close_to_the_closed_form(schedule):
    """float32 data: KL = ½(σ² - 1 - log σ² + μ²) with σ² = 1 - 4e-5 cancels to ~1e-7 nats per
    dimension on a total of ~7e-6, so only ~1e-2 relative is available."""
    g = torch.Generator().manual_seed(6)
    x0 = torch.randint(0, 256, (8, 3, 16, 16), generator=g).float() / 127.5 - 1
    got = prior_bpd(schedule, x0)
    torch.testing.assert_close(got.double(), prior_by_distributions(x0, ABAR[-1].item()), rtol=1e-2, atol=0)


# --- L_simple ---------------------------------------------------------------------------------


def test_l_simple_is_per_example_and_zero_for_a_model_that_knows_the_noise_eq_l_simple_ho_eq14(schedule):
    """Book Eq. (l-simple), Ho et al. Eq. 14: ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖², averaged over dimensions.

    The model knows x_0, not the noise: from the (x_t, t) it is given it recovers
    ε = (x_t - √ᾱ_t x_0)/√(1-ᾱ_t), with ᾱ from a float64 Python loop. Its loss is 0 (below 1e-9 on
    float64 data; the float32 coefficients leave < 1e-12) only if l_simple feeds it x_t of
    Eq. (forward-reparam) at each example's own t: x_0 in place of x_t costs ~1, t off by one 3e-6 or
    more at t ≤ 500. A model off by a known δ scores mean_d δ², per example (a sum over the D = 32
    dimensions would be 32 times larger, a mean over the batch would mix the five δ scales).
    """
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 500, 999])

    def knows_x0(xt, tt):
        return (xt - col(ABAR[tt].sqrt(), 4) * x0) / col((1 - ABAR[tt]).sqrt(), 4)

    loss = l_simple(knows_x0, schedule, x0, t, noise)
    assert loss.shape == (5,) and loss.dtype == torch.float64
    assert loss.max().item() < 1e-9, loss
    delta = torch.linspace(-1, 1, 32, dtype=torch.float64).reshape(1, 2, 4, 4) * col(
        torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64), 4
    )
    off = l_simple(lambda xt, tt: knows_x0(xt, tt) + delta, schedule, x0, t, noise)
    expected = torch.tensor([sum(v * v for v in d.flatten().tolist()) / 32 for d in delta], dtype=torch.float64)
    torch.testing.assert_close(off, expected, rtol=1e-4, atol=0)  # cross term 2δ·(recovery error): 9e-6 at t = 0
    zero = l_simple(lambda xt, tt: torch.zeros_like(xt), schedule, x0, t, noise)
    torch.testing.assert_close(zero, (noise**2).flatten(1).mean(1))
    assert torch.equal(mean_flat(noise**2), (noise**2).flatten(1).mean(1))


def test_l_simple_with_x0_and_v_targets_is_zero_for_the_exact_target(schedule):
    g = torch.Generator().manual_seed(8)
    x0, noise = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    t = torch.tensor([0, 1, 2, 500, 998, 999])
    v = (col(ABAR[t].sqrt(), 2) * noise.double() - col((1 - ABAR[t]).sqrt(), 2) * x0.double()).float()
    assert (l_simple(lambda xt, tt: x0, schedule, x0, t, noise, target="x0") == 0).all()
    assert l_simple(lambda xt, tt: v, schedule, x0, t, noise, target="v").max() < 1e-10
    assert l_simple(lambda xt, tt: x0, schedule, x0, t, noise, target="v").min() > 1e-3


def test_l_simple_rejects_a_model_output_of_the_wrong_shape(schedule):
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="returned shape"):
        l_simple(lambda xt, tt: xt[:, :2], schedule, x0, torch.tensor([0, 1]), torch.zeros(2, 3))


# --- the whole bound in bits/dim --------------------------------------------------------------

SHORT = [1e-3, 2e-3, 4e-3, 6e-3, 8e-3, 1e-2]  # T = 6; small noise so each x_t reveals its x_0
S_BETA, S_ALPHA, S_ABAR, S_ABAR_PREV = coefs(SHORT)


def three_images():
    """Three distinct 8-bit images (2, 4, 4): all -1 (edge bin); all one middle level; half +1."""
    mid = -1 + 2 * 128 / 255
    x0 = torch.full((3, 2, 4, 4), mid)
    x0[0] = -1.0
    x0[2, 0] = 1.0
    return x0


def exact_eps_model(data):
    """ε(x_t, t) = (x_t - √ᾱ_t x_0)/√(1-ᾱ_t) for the x_0 of ``data`` nearest to x_t/√ᾱ_t: the true noise."""

    def model(xt, t):
        a, s = col(S_ABAR[t].sqrt(), 4), col((1 - S_ABAR[t]).sqrt(), 4)
        dist = ((xt.double()[:, None] / a[:, None] - data.double()[None]) ** 2).flatten(2).mean(2)  # (N, B)
        x0 = data.double()[dist.argmin(1)]
        return ((xt.double() - a * x0) / s).float()

    return model


def decoder_bits(x0, sigma):
    """-mean_d log₂ P(bin of x_0 | N(x_0, σ²)): interior bins 2Φ(1/(255σ)) - 1, edge bins Φ(1/(255σ))."""
    d = Normal(torch.tensor(0.0, dtype=torch.float64), sigma)
    half = torch.tensor(1 / 255, dtype=torch.float64)
    p = torch.where(x0.abs() > 0.999, d.cdf(half), d.cdf(half) - d.cdf(-half))
    return -(p.double().log()).flatten(1).mean(1) / LN2


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_nll_bits_per_dim_with_the_exact_model_ho_eq5(variance):
    """Ho et al. Eq. 5 for a model that returns the true noise: every KL term is 0 (σ² = β̃) or
    the variance mismatch KL(N(0, β̃_t) ‖ N(0, β_t)) (σ² = β); the decoder is the bin probability
    of x_0 under N(x_0, σ_1²); the prior is KL(q(x_T|x_0) ‖ N(0, I)). Checked per example, so a
    mix-up of examples inside the batching over t would show."""
    schedule = schedule_from_betas(SHORT)
    x0 = three_images()
    vlb = nll_bits_per_dim(exact_eps_model(x0), schedule, x0, variance=variance, generator=torch.Generator().manual_seed(9))
    assert vlb.total.shape == vlb.prior.shape == vlb.decoder.shape == (3,) and vlb.kl.shape == (3, 5)

    beta_tilde = S_BETA * (1 - S_ABAR_PREV) / (1 - S_ABAR)  # code t; index 0 is 0
    sigma2 = beta_tilde if variance == "beta_tilde" else S_BETA
    sigma2_decoder = beta_tilde[1] if variance == "beta_tilde" else S_BETA[0]  # clipped at code 0
    expected_kl = kl_divergence(Normal(0.0, beta_tilde[1:].sqrt()), Normal(0.0, sigma2[1:].sqrt())) / LN2
    torch.testing.assert_close(vlb.kl.double(), expected_kl.expand(3, 5), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(vlb.decoder.double(), decoder_bits(x0, sigma2_decoder.sqrt()), rtol=1e-4, atol=0)
    assert vlb.decoder[0] < vlb.decoder[2] < vlb.decoder[1]  # edge bins are wider
    torch.testing.assert_close(vlb.prior.double(), prior_by_distributions(x0, S_ABAR[-1].item()), rtol=1e-4, atol=0)
    torch.testing.assert_close(vlb.total, vlb.prior + vlb.decoder + vlb.kl.sum(1), rtol=1e-6, atol=1e-6)


def test_nll_bits_per_dim_does_not_depend_on_max_batch_for_the_exact_model():
    """With the exact model every term is independent of the noise drawn, so batching the T
    timesteps one by one (max_batch=1) or all at once must give the same bound."""
    schedule = schedule_from_betas(SHORT)
    x0 = three_images()
    model = exact_eps_model(x0)
    one = nll_bits_per_dim(model, schedule, x0, max_batch=1, generator=torch.Generator().manual_seed(10))
    all_ = nll_bits_per_dim(model, schedule, x0, max_batch=10_000, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(one.total, all_.total, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one.kl, all_.kl, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_batch", [1, 10_000])
def test_nll_kl_terms_of_a_zero_model_average_to_lambda_t_eq_kl_weight(max_batch):
    """For ε_θ ≡ 0 and σ² = β̃, Eq. (kl-weight) gives E[L_{t-1}] = λ_t E[ε²] = λ_t per dimension.
    Each entry of kl is λ_t mean_d ε² / ln 2; over B·D = 256·32 values of ε², the SE of the mean
    of ε² is √(2/8192) ≈ 0.016; tolerance 5 SE, relative."""
    schedule = schedule_from_betas(SHORT)
    g = torch.Generator().manual_seed(12)
    x0 = torch.randint(0, 256, (256, 2, 4, 4), generator=g).float() / 127.5 - 1
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    vlb = nll_bits_per_dim(zero, schedule, x0, max_batch=max_batch, generator=g)
    beta_tilde = S_BETA * (1 - S_ABAR_PREV) / (1 - S_ABAR)
    lam = S_BETA**2 / (2 * beta_tilde * S_ALPHA * (1 - S_ABAR))
    ratio = vlb.kl.double().mean(0) / (lam[1:] / LN2)
    assert ((ratio - 1).abs() < 5 * math.sqrt(2 / (256 * 32))).all(), ratio


def test_continuous_decoder_is_the_gaussian_density():
    from ddpm_utils.losses import gaussian_log_likelihood

    g = torch.Generator().manual_seed(20)
    x, mean = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    log_var = torch.randn(5, 1, generator=g, dtype=torch.float64)
    expected = Normal(mean, (0.5 * log_var).exp()).log_prob(x)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, log_var.expand_as(x)), expected)


def test_stratified_bound_estimate_is_unbiased_with_its_standard_error():
    """vlb_stratified with 20 strata on 1-D Gaussian data and the exact ε*: its mean over 3,000 examples is
    within 4 of its own standard errors of the exact bound (gaussian_data_bound), that standard error
    bounds the spread of 5 repeated estimates on the same x_0 (within a factor 2: a spread of five
    values is itself uncertain), and with all T - 1 strata it is nll_bits_per_dim."""
    from ddpm_utils import GaussianMixture, MixtureOracle
    from ddpm_utils.losses import vlb_stratified
    from ddpm_utils.oracle import gaussian_data_bound

    schedule = make_schedule("linear")
    f64 = dict(dtype=torch.float64)
    data = GaussianMixture(torch.ones(1, **f64), torch.tensor([[0.3]], **f64), torch.tensor([[0.5**0.5]], **f64))
    oracle = MixtureOracle(data, schedule)
    g = torch.Generator().manual_seed(21)
    x0 = data.sample(3000, g)
    exact = gaussian_data_bound(schedule, 0.3, 0.5).total.item() / LN2
    means, errors = [], []
    for _ in range(5):
        est = vlb_stratified(oracle, schedule, x0, strata=20, generator=g, decoder="continuous", max_batch=100_000)
        assert est.total.shape == est.prior.shape == est.decoder.shape == est.kl.shape == (3000,)
        torch.testing.assert_close(est.total, est.prior + est.decoder + est.kl)
        means.append(est.total.double().mean().item())
        errors.append(est.standard_error)
    assert all(abs(m - exact) < 4 * e for m, e in zip(means, errors)), (means, errors, exact)
    spread = torch.tensor(means).std().item()  # the same x_0 each time: only the t and x_t draws move it
    assert spread < 2 * sum(errors) / len(errors)
    # all strata of size one: every term once, as nll_bits_per_dim does
    small = schedule_from_betas(BETAS[:6])
    x_small = torch.rand(4, 3, generator=g) * 2 - 1
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    full = vlb_stratified(zero, small, x_small, strata=5, generator=torch.Generator().manual_seed(1))
    ref = nll_bits_per_dim(zero, small, x_small, generator=torch.Generator().manual_seed(1), max_batch=4)
    assert full.kl.shape == (4,)
    torch.testing.assert_close(full.prior, ref.prior)


def test_vlb_stratified_and_decoders_reject_bad_arguments():
    from ddpm_utils.losses import vlb_stratified

    schedule = schedule_from_betas(BETAS[:6])
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    x0 = torch.zeros(4, 2)
    for strata in (0, 6):
        with pytest.raises(ValueError, match="strata"):
            vlb_stratified(zero, schedule, x0, strata=strata)
    with pytest.raises(ValueError, match="at least 2"):
        vlb_stratified(zero, schedule, x0[:1], strata=2)
    with pytest.raises(ValueError, match="decoder"):
        nll_bits_per_dim(zero, schedule, x0, decoder="gaussian")
