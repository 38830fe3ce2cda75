"""Tests of chapter 5: the weights between the ε, x_0 and v targets, and zero terminal SNR.

Book Eqs. (v-rotation), (target-weights), (reverse-mean-v), (zero-snr) and (zero-snr-targets);
Lin et al. 2024 ("Common diffusion noise schedules and sample steps are flawed"), Algorithm 1.
Reference values never come from the package's formulas: a_t = √ᾱ_t and s_t = √(1-ᾱ_t) from
``reference.loop_alpha_bars`` (a Python loop over the betas), the rescaled schedule checked by a
least-squares line and by Lin et al.'s algorithm transcribed, x̂_0 errors converted to ε and v by
hand, v as autograd's derivative along the angle, and samples against the mixture's moments.
"""

import math

import numpy as np
import pytest
import torch

import ddpm_utils as du
from ddpm_utils import (
    MixtureOracle,
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    kl_weight,
    l_simple,
    make_schedule,
    p_mean_variance,
    rescale_zero_terminal_snr,
    timestep_subsequence,
    training_target,
    x0_eps_to_v,
    x0_error_weight,
    x0_to_eps,
)
from ddpm_utils.data import mixture_1d
from ddpm_utils.models import MLPConfig, MLPDenoiser
from ddpm_utils.training import TrainConfig, train
from reference import betas_from_alpha_bar, cosine_alpha_bar, linear_betas, loop_alpha_bars, sigmoid_alpha_bar

T = 1000
F64 = dict(dtype=torch.float64)
ORIGINAL = {
    "linear": linear_betas(T),
    "cosine": betas_from_alpha_bar(cosine_alpha_bar, T),
    "sigmoid": betas_from_alpha_bar(sigmoid_alpha_bar, T),
}
# the book's 1-D mixture 0.3 N(-1, 0.15²) + 0.7 N(1, 0.25²), its moments by hand
MIX_MEAN = 0.3 * -1 + 0.7 * 1  # 0.4
MIX_VAR = 0.3 * (0.15**2 + 1) + 0.7 * (0.25**2 + 1) - MIX_MEAN**2  # 0.8905


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def zero_snr():
    """Ho et al.'s linear schedule (T = 1000), rescaled to zero terminal SNR."""
    return make_schedule("linear", T, zero_terminal_snr=True)


def loop_scales(schedule):
    """(a_t, s_t) at every code index, float64 tensors, ᾱ by the Python loop over the schedule's betas."""
    alpha_bars = torch.tensor(loop_alpha_bars(schedule.betas.tolist()), **F64)
    return alpha_bars.sqrt(), (1 - alpha_bars).sqrt()


# --- Eq. (zero-snr): the rescaled schedule ---------------------------------------------------


def lin_algorithm_1(betas):
    """Lin et al. 2024, Algorithm 1, transcribed in plain float64 Python: shift √ᾱ to end at 0, scale to keep √ᾱ_1."""
    sqrt_ab = [math.sqrt(a) for a in loop_alpha_bars(betas)]
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = [(r - last) * first / (first - last) for r in sqrt_ab]
    ab = [r * r for r in sqrt_ab]
    return [1 - ab[0]] + [1 - ab[t] / ab[t - 1] for t in range(1, len(ab))]


@pytest.mark.parametrize("kind", ORIGINAL)
def test_rescaled_schedule_has_zero_terminal_snr_and_keeps_the_first_step_eq_zero_snr(kind):
    """ᾱ'_T = 0 exactly, ᾱ'_1 = ᾱ_1, √ᾱ' an affine function of √ᾱ (a least-squares line through all T
    points, residual at rounding level, with the slope and intercept of Eq. (zero-snr)), β' in (0, 1)
    before the last; and the betas of Lin et al.'s Algorithm 1 transcribed. ᾱ by the Python loop."""
    betas = ORIGINAL[kind]
    rescaled = rescale_zero_terminal_snr(torch.tensor(betas, **F64))
    assert rescaled.dtype == torch.float64 and rescaled.shape == (T,)
    new = rescaled.tolist()
    assert new[-1] == 1.0 and all(0 < b < 1 for b in new[:-1])
    ab_old, ab_new = loop_alpha_bars(betas), loop_alpha_bars(new)
    assert ab_new[-1] == 0.0
    assert ab_new[0] == pytest.approx(ab_old[0], rel=1e-12, abs=0)
    assert all(later < earlier for earlier, later in zip(ab_new, ab_new[1:]))

    x, y = np.sqrt(ab_old), np.sqrt(ab_new)
    (slope, intercept), *_ = np.linalg.lstsq(np.stack([x, np.ones(T)], 1), y, rcond=None)
    assert np.abs(slope * x + intercept - y).max() < 1e-12
    slope_eq = x[0] / (x[0] - x[-1])  # Eq. (zero-snr): √ᾱ' = √ᾱ_1 (√ᾱ - √ᾱ_T) / (√ᾱ_1 - √ᾱ_T)
    assert slope == pytest.approx(slope_eq, rel=1e-10) and intercept == pytest.approx(-slope_eq * x[-1], rel=1e-9)

    # Algorithm 1 as printed loses digits to 1 - ᾱ'_t/ᾱ'_{t-1} where β is small: 3e-12 apart, hence 1e-10
    torch.testing.assert_close(rescaled, torch.tensor(lin_algorithm_1(betas), **F64), rtol=1e-10, atol=0)


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
def test_make_schedule_with_zero_terminal_snr_ends_at_alpha_bar_0_and_keeps_every_other_coefficient_finite(kind):
    """make_schedule(kind, zero_terminal_snr=True) is the rescaled schedule of that kind; at T: ᾱ = √ᾱ = SNR = 0,
    log SNR = -inf, and the posterior at T by hand from the loop's ᾱ_{T-1}: β̃_T = 1 - ᾱ_{T-1},
    μ̃_T = √ᾱ_{T-1} x_0 + 0 · x_T. Every other stored value is finite."""
    s = make_schedule(kind, T, zero_terminal_snr=True)
    plain = make_schedule(kind, T)
    assert s.zero_terminal_snr and not plain.zero_terminal_snr and s.kind == kind
    assert "zero_terminal_snr=True" in repr(s)
    torch.testing.assert_close(s.betas.double(), rescale_zero_terminal_snr(plain.betas.double()).float().double(),
                               rtol=1e-6, atol=0)
    assert s.betas[-1].item() == 1.0 and s.alphas[-1].item() == 0.0
    for name in ("alpha_bars", "sqrt_alpha_bars", "snr"):
        assert getattr(s, name)[-1].item() == 0.0, name
    assert s.log_snr[-1].item() == -math.inf
    assert s.one_minus_alpha_bars[-1].item() == 1.0 and s.sqrt_one_minus_alpha_bars[-1].item() == 1.0
    ab_prev = loop_alpha_bars(s.betas.tolist())[-2]  # ᾱ_{T-1}
    assert s.posterior_variance[-1].item() == pytest.approx(1 - ab_prev, rel=1e-6)
    assert s.posterior_log_variance_clipped[-1].item() == pytest.approx(math.log(1 - ab_prev), abs=1e-6)
    assert s.posterior_mean_coef_x0[-1].item() == pytest.approx(math.sqrt(ab_prev), rel=1e-6)
    assert s.posterior_mean_coef_xt[-1].item() == 0.0
    for name in ("betas", "alphas", "alpha_bars", "alpha_bars_prev", "one_minus_alpha_bars", "sqrt_alpha_bars",
                 "sqrt_one_minus_alpha_bars", "snr", "posterior_variance", "posterior_log_variance_clipped",
                 "posterior_mean_coef_x0", "posterior_mean_coef_xt"):
        assert torch.isfinite(getattr(s, name)).all(), name
    assert torch.isfinite(s.log_snr[:-1]).all()


def test_rescale_refuses_a_single_step_and_bad_betas():
    with pytest.raises(ValueError, match="T >= 2"):
        rescale_zero_terminal_snr([0.5])
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        rescale_zero_terminal_snr([0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match="T must be an integer of at least 1"):
        make_schedule("linear", 0, zero_terminal_snr=True)
    # a schedule that already ends at ᾱ_T = 0 is left as it is
    once = rescale_zero_terminal_snr(torch.tensor(ORIGINAL["cosine"], **F64))
    torch.testing.assert_close(rescale_zero_terminal_snr(once), once, rtol=1e-12, atol=0)


# --- Eq. (v-rotation) and Eq. (target-weights) ------------------------------------------------


def test_v_is_the_derivative_of_xt_along_the_angle_eq_v_rotation(zero_snr):
    """x_t = cos φ x_0 + sin φ ε with φ_t = atan2(s_t, a_t): autograd's ∂x_t/∂φ at fixed x_0, ε is v; and the
    rotation keeps ‖x_t‖² + ‖v‖² = ‖x_0‖² + ‖ε‖². At every t, including t = T with ᾱ = 0 (φ = π/2, v = -x_0)."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(T)
    x0, eps = torch.randn(T, 3, generator=g, **F64), torch.randn(T, 3, generator=g, **F64)
    a, s = zero_snr.sqrt_alpha_bars.double(), zero_snr.sqrt_one_minus_alpha_bars.double()
    phi = torch.atan2(s, a).requires_grad_()
    xt = torch.cos(phi)[:, None] * x0 + torch.sin(phi)[:, None] * eps
    # one coordinate at a time: column d of ∂x_t/∂φ is the gradient of Σ_B x_t[:, d] (each x_t has its own φ)
    columns = [torch.autograd.grad(xt[:, d].sum(), phi, retain_graph=True)[0] for d in range(3)]
    derivative = torch.stack(columns, 1)
    v = x0_eps_to_v(zero_snr, x0, t, eps)
    torch.testing.assert_close(v, derivative, rtol=0, atol=1e-6)  # the schedule stores a, s in float32
    assert phi[-1].item() == pytest.approx(math.pi / 2) and torch.equal(v[-1], -x0[-1])
    xt = xt.detach()
    torch.testing.assert_close((xt**2 + v**2).sum(1), (x0**2 + eps**2).sum(1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("t_value", [0, 1, 10, 250, 500, 900, 998, 999])
def test_error_weights_between_targets_eq_target_weights(zero_snr, t_value):
    """Two predictions of x_0 at one x_t, converted to ε and v (i) by hand from Eq. (v-pair) with the loop's
    a, s: ‖ε̂-ε‖² = SNR ‖x̂_0-x_0‖² and ‖v̂-v‖² = (1+SNR) ‖x̂_0-x_0‖² to float64 rounding; (ii) by the package's
    converters, against x0_error_weight (the schedule's float32 coefficients: 1e-6). At t = 0 (SNR ≈ 10⁴) and
    at the zero-SNR step t = T (weights 0 and 1)."""
    g = torch.Generator().manual_seed(t_value)
    B = 16
    xt, x0, x0_hat = (torch.randn(B, 4, generator=g, **F64) for _ in range(3))
    t = torch.full((B,), t_value)
    a_all, s_all = loop_scales(zero_snr)
    a, s = a_all[t_value].item(), s_all[t_value].item()
    snr = a * a / (s * s)
    x0_err = ((x0_hat - x0) ** 2).sum(1)

    # (i) by hand: ε = (x_t - a x_0)/s, v = a ε - s x_0. Where a is small (t near T) ε̂ - ε is a difference of
    # two O(1) numbers a Δ apart, so float64 rounding shows at 1e-16/a: 3e-12 at t = 998, hence rtol 1e-10
    eps, eps_hat = (xt - a * x0) / s, (xt - a * x0_hat) / s
    v, v_hat = a * eps - s * x0, a * eps_hat - s * x0_hat
    torch.testing.assert_close(((eps_hat - eps) ** 2).sum(1), snr * x0_err, rtol=1e-10, atol=0)
    torch.testing.assert_close(((v_hat - v) ** 2).sum(1), (1 + snr) * x0_err, rtol=1e-10, atol=0)

    # (ii) the package's converters and weights
    weights = {target: x0_error_weight(zero_snr, t, target).double() for target in ("eps", "x0", "v")}
    for target, w in weights.items():
        assert w.shape == (B,) and torch.isfinite(w).all()
    torch.testing.assert_close(weights["eps"], torch.full((B,), snr, **F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(weights["v"], torch.full((B,), 1 + snr, **F64), rtol=1e-6, atol=0)
    assert torch.equal(weights["x0"], torch.ones(B, **F64))
    eps_pkg, eps_hat_pkg = x0_to_eps(zero_snr, xt, t, x0), x0_to_eps(zero_snr, xt, t, x0_hat)
    v_pkg, v_hat_pkg = x0_eps_to_v(zero_snr, x0, t, eps_pkg), x0_eps_to_v(zero_snr, x0_hat, t, eps_hat_pkg)
    torch.testing.assert_close(((eps_hat_pkg - eps_pkg) ** 2).sum(1), weights["eps"] * x0_err, rtol=1e-6, atol=0)
    torch.testing.assert_close(((v_hat_pkg - v_pkg) ** 2).sum(1), weights["v"] * x0_err, rtol=1e-6, atol=0)
    if t_value == T - 1:
        assert weights["eps"].eq(0).all() and weights["v"].eq(1).all()


def test_eps_weight_times_the_kl_weight_is_the_bounds_x0_weight_eq_target_weights():
    """Chapter 2's λ_t weighs the ε error in the bound; by Eq. (target-weights) λ_t · SNR(t) weighs the x_0
    error, which for σ² = β̃ is ½ (SNR(t-1) - SNR(t)) (Eq. kl-weight-x0), SNR from the loop, at every t ≥ 2."""
    schedule = make_schedule("linear", T)
    abar = torch.tensor(loop_alpha_bars(ORIGINAL["linear"]), **F64)
    snr = abar / (1 - abar)
    t = torch.arange(1, T)
    product = kl_weight(schedule, t).double() * x0_error_weight(schedule, t, "eps").double()
    torch.testing.assert_close(product, 0.5 * (snr[:-1] - snr[1:]), rtol=1e-4, atol=0)


def test_x0_error_weight_refuses_unknown_targets_and_bad_t(zero_snr):
    with pytest.raises(ValueError, match="unknown prediction target"):
        x0_error_weight(zero_snr, torch.tensor([0]), "score")
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        x0_error_weight(zero_snr, torch.tensor([1000]), "v")


# --- Eq. (reverse-mean-v) and Eq. (zero-snr-targets) at ᾱ_T = 0 --------------------------------


def test_reverse_mean_in_v_is_finite_at_zero_terminal_snr_eq_reverse_mean_v(zero_snr):
    """μ_θ = √α_t x_t - √ᾱ_{t-1} β_t / √(1-ᾱ_t) · v̂ by hand (ᾱ from the loop) against p_mean_variance with
    target "v", at t = 1, a middle t and t = T, where it is -√ᾱ_{T-1} v̂: finite though √ᾱ_T = 0."""
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([0, 400, 998, 999, 999])
    xt, v_hat = torch.randn(5, 2, generator=g, **F64), torch.randn(5, 2, generator=g, **F64)
    abar = torch.tensor(loop_alpha_bars(zero_snr.betas.tolist()), **F64)
    abar_prev = torch.cat([torch.ones(1, **F64), abar[:-1]])
    beta = zero_snr.betas.double()
    by_hand = ((1 - beta[t]).sqrt()[:, None] * xt
               - (abar_prev[t].sqrt() * beta[t] / (1 - abar[t]).sqrt())[:, None] * v_hat)
    step = p_mean_variance(lambda x, tt: v_hat, zero_snr, xt, t, target="v")
    assert torch.isfinite(step.mean).all() and torch.isfinite(step.log_variance).all()
    torch.testing.assert_close(step.mean, by_hand, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(step.mean[3:], -abar_prev[999].sqrt() * v_hat[3:], rtol=1e-6, atol=0)


def test_optimal_targets_at_zero_snr_eq_zero_snr_targets(zero_snr):
    """At ᾱ_T = 0, x_T = ε is independent of x_0: the exact oracle returns ε* = x_T, x_0* = E[x_0] and
    v* = -E[x_0], the mixture mean 0.3·(-1) + 0.7·1 = 0.4 by hand, whatever x_T."""
    mixture = mixture_1d()
    xT = torch.linspace(-4, 4, 9)
    t = torch.full((9,), T - 1)
    assert torch.equal(MixtureOracle(mixture, zero_snr, target="eps")(xT, t), xT)
    torch.testing.assert_close(MixtureOracle(mixture, zero_snr, target="x0")(xT, t), torch.full((9,), MIX_MEAN))
    torch.testing.assert_close(MixtureOracle(mixture, zero_snr, target="v")(xT, t), torch.full((9,), -MIX_MEAN))
    torch.testing.assert_close(MixtureOracle(mixture, zero_snr).posterior_mean_x0(xT, t), torch.full((9,), MIX_MEAN))


SAMPLERS_AT_ZERO_SNR = {
    "ddpm-beta_tilde": lambda model, s, xT, target, g: ddpm_sample(model, s, xT, steps=200, target=target, generator=g),
    "ddpm-beta": lambda model, s, xT, target, g: ddpm_sample(model, s, xT, steps=200, target=target, generator=g,
                                                             variance="beta"),
    "ddim-eta-0": lambda model, s, xT, target, g: ddim_sample(model, s, xT, steps=200, target=target),
    "ddim-eta-0.5": lambda model, s, xT, target, g: ddim_sample(model, s, xT, steps=200, target=target, eta=0.5,
                                                                generator=g),
    "ddim-eta-1": lambda model, s, xT, target, g: ddim_sample(model, s, xT, steps=200, target=target, eta=1.0,
                                                              generator=g),
    "dpmpp-2m": lambda model, s, xT, target, g: dpmpp_2m_sample(model, s, xT, steps=200, target=target),
}


@pytest.mark.parametrize("target", ["v", "x0"])
@pytest.mark.parametrize("sampler", SAMPLERS_AT_ZERO_SNR)
def test_samplers_reproduce_the_mixture_from_a_zero_terminal_snr_schedule_eq_zero_snr_targets(zero_snr, sampler,
                                                                                               target):
    """200 steps from x_T ~ N(0, 1) at ᾱ_T = 0 with the exact oracle: finite samples whose mean is within 4 standard
    errors of the mixture's 0.4 and whose variance is within 5 % of its 0.8905 (moments by hand). Measured with
    8000 samples: mean errors 0.1 to 0.4 SE; variance -1.7 % (DDPM with β̃ and DDIM with η = 1, the same chain),
    -1.5 % (η = 0.5), -0.9 % (η = 0), -0.4 % (DDPM with β), +0.1 % (DPM-Solver++(2M)). The -1.7 % is the 200-step
    chain's own, as large on the plain schedule."""
    n = 8000
    xT = torch.randn(n, generator=torch.Generator().manual_seed(1))
    x = SAMPLERS_AT_ZERO_SNR[sampler](MixtureOracle(mixture_1d(), zero_snr, target=target), zero_snr, xT, target,
                                      torch.Generator().manual_seed(2)).double()
    assert torch.isfinite(x).all()
    assert abs(x.mean().item() - MIX_MEAN) < 4 * math.sqrt(MIX_VAR / n)
    assert x.var().item() == pytest.approx(MIX_VAR, rel=0.05)


def test_dpmpp_2m_takes_its_first_two_steps_first_order_from_zero_terminal_snr(zero_snr):
    """λ_T = -inf makes h = ∞ on the first step, and h_prev = ∞ makes 1/2r = h/(2 h_prev) = 0 on the second, so
    both are first order: the x_t after two steps equals DDIM's (η = 0, the first-order step) at the same visited
    steps (measured: 5e-7 apart, float32 rounding), and is finite. On the plain schedule the second step is second
    order and they differ by 3e-4; from zero terminal SNR the third step is second order again (1e-3 apart)."""
    mixture = mixture_1d()
    steps = timestep_subsequence(T, 10, "trailing").tolist()
    xT = torch.randn(256, generator=torch.Generator().manual_seed(4))

    def states(sampler, schedule):
        seen = []
        sampler(MixtureOracle(mixture, schedule, target="v"), schedule, xT, steps=steps, target="v",
                callback=lambda step: seen.append(step.xt))
        return seen  # x_t at each visited step, from x_T

    dpm, ddim = states(dpmpp_2m_sample, zero_snr), states(ddim_sample, zero_snr)
    assert all(torch.isfinite(x).all() for x in dpm)
    torch.testing.assert_close(dpm[2], ddim[2], rtol=0, atol=2e-6)
    assert (dpm[3] - ddim[3]).abs().max() > 1e-4
    plain = make_schedule("linear", T)
    assert (states(dpmpp_2m_sample, plain)[2] - states(ddim_sample, plain)[2]).abs().max() > 1e-4


# --- the ε target at ᾱ = 0: refused before the model runs --------------------------------------


@pytest.mark.parametrize("sampler, kwargs", [
    (ddpm_sample, dict()), (ddpm_sample, dict(steps=10)), (ddim_sample, dict(steps=10, eta=1.0)),
    (dpmpp_2m_sample, dict(steps=10)),
], ids=["ddpm-all-steps", "ddpm-respaced", "ddim", "dpmpp-2m"])
def test_eps_target_at_zero_terminal_snr_is_refused_before_the_model_runs(zero_snr, sampler, kwargs):
    """x̂_0 = (x_T - ε̂)/0 at the first step: each sampler raises a ValueError naming the step and the remedy,
    and the model is never called. A spacing that skips code index T-1 ("leading") samples with ε."""
    calls = []

    def model(xt, t):
        calls.append(t)
        return torch.zeros_like(xt)

    with pytest.raises(ValueError, match=r"ε-prediction cannot recover x̂_0 at ᾱ_t = 0 .*code index 999.*target='v'"):
        sampler(model, zero_snr, (4, 2), target="eps", **kwargs)
    assert calls == []
    out = sampler(MixtureOracle(mixture_1d(), zero_snr), zero_snr, (64,), target="eps", steps=10, spacing="leading")
    assert torch.isfinite(out).all()


def test_the_bound_refuses_the_eps_target_at_zero_terminal_snr(zero_snr):
    """The bound's KL at t = T needs x̂_0: nll_bits_per_dim, the stratified bound, the chain form, kl_weight and
    train(loss="vlb") refuse ε there instead of returning inf; the v target gives a finite bound."""
    x0 = torch.rand(4, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1
    oracle = MixtureOracle(mixture_1d(), zero_snr)
    message = "ε-prediction cannot recover"
    with pytest.raises(ValueError, match=message):
        du.nll_bits_per_dim(oracle, zero_snr, x0[:, 0], decoder="continuous")
    with pytest.raises(ValueError, match=message):
        du.vlb_stratified(oracle, zero_snr, x0[:, 0], strata=4, decoder="continuous")
    with pytest.raises(ValueError, match=message):
        du.elbo_chain_form(oracle, zero_snr, x0[:, 0])
    with pytest.raises(ValueError, match="kl_weight is infinite"):
        kl_weight(zero_snr, torch.tensor([5, 999]))
    assert torch.isfinite(kl_weight(zero_snr, torch.arange(1, T - 1))).all()
    torch.manual_seed(0)
    mlp = MLPDenoiser(MLPConfig(data_dim=2, hidden=8, depth=1, time_dim=8))
    with pytest.raises(ValueError, match=message):
        train(mlp, zero_snr, x0, TrainConfig(steps=1, batch_size=4, loss="vlb"), progress=False)
    v_oracle = MixtureOracle(mixture_1d(), zero_snr, target="v")
    bound = du.nll_bits_per_dim(v_oracle, zero_snr, x0[:, 0], target="v", decoder="continuous")
    assert torch.isfinite(bound.total).all() and torch.isfinite(bound.kl[:, -1]).all()


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_training_at_zero_terminal_snr_is_finite_for_every_target(zero_snr, target):
    """At t = T: the ε target is x_T = ε itself, x_0 is x_0, v is -x_0 (by hand); L_simple is finite for all three,
    and a few steps of train (L_simple) on the zero-terminal schedule give a finite loss."""
    g = torch.Generator().manual_seed(6)
    x0, eps = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    t = torch.full((8,), T - 1)
    expected = {"eps": eps, "x0": x0, "v": -x0}[target]
    assert torch.equal(training_target(zero_snr, x0, t, eps, target), expected)
    loss = l_simple(lambda xt, tt: torch.zeros_like(xt), zero_snr, x0, t, eps, target)
    torch.testing.assert_close(loss, (expected**2).mean(1))
    torch.manual_seed(0)
    mlp = MLPDenoiser(MLPConfig(data_dim=2, hidden=8, depth=1, time_dim=8))
    result = train(mlp, zero_snr, torch.randn(64, 2, generator=g), TrainConfig(steps=5, batch_size=16, target=target,
                                                                               precision="fp32"), progress=False)
    assert torch.isfinite(result.losses).all()
