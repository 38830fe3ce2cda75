"""Tests of chapter 4's deterministic samplers: DDIM (Song et al. 2021) and DPM-Solver++(2M) (Lu et al. 2022).

Each book equation is checked by a route that does not share its formula: torch's Gaussian KL,
Monte Carlo, closed-form solutions of the probability-flow ODE (constant x̂_0, Gaussian data),
scipy quadrature of the exponential integrator, an Euler step written by hand, and diffusers'
DPMSolverMultistepScheduler. Convergence orders are fitted log-log slopes of the error against
the number of steps. Notation as in the chapter: a = √ᾱ, s = √(1-ᾱ), λ = log(a/s), κ = s/a;
a and s come from ``reference.loop_alpha_bars`` (a Python loop over the betas), never from the package.
"""

import math

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from scipy.integrate import quad
from torch.distributions import Independent, Normal, kl_divergence

import ddpm_utils as du
from ddpm_utils import GaussianMixture, MixtureOracle, ddim_sample, dpmpp_2m_sample, make_schedule
from ddpm_utils.data import mixture_1d
from reference import loop_alpha_bars

BOOK = make_schedule()  # linear, T = 1000
NS = [20, 40, 80, 160]  # step counts of the convergence tests


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def scales(schedule):
    """a_t = √ᾱ_t and s_t = √(1-ᾱ_t) at every code index, Python floats, ᾱ by the reference loop."""
    alpha_bars = loop_alpha_bars(schedule.betas.tolist())
    return [math.sqrt(ab) for ab in alpha_bars], [math.sqrt(1 - ab) for ab in alpha_bars]


def gaussian(mu, rho):
    """1-D data N(μ, ρ²) as a one-component mixture."""
    return GaussianMixture(torch.ones(1), torch.tensor([[mu]]), torch.tensor([[rho]]))


def visited_states(sampler, model, schedule, xT, **kwargs):
    """The sampler's output and {code index: the x_t it visited}, read through the callback."""
    seen = {}
    out = sampler(model, schedule, xT, callback=lambda step: seen.update({step.t: step.xt}), **kwargs)
    return out, seen


def slope(ns, errors):
    """The order p of error ∝ n^-p, fitted by least squares on log-log axes."""
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def constant_x0(c):
    """A model with target "x0" that predicts the constant c everywhere."""
    return lambda x, t: torch.full_like(x, c)


# --- the DDIM family -----------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_family_keeps_the_marginals_of_q_eq_ddim_family(eta):
    """Eq. (ddim-family), Lemma lem-ddim-marginals: with the true x_0 of one-point data (a model with
    target "x0" returning it) DDIM draws from the family itself, so at every visited step x_t ~ N(a_t x_0,
    s_t²). Monte Carlo over 200 000 chains started from x_T ~ N(a_T x_0, s_T²), within 5 standard errors."""
    x0, N = 0.8, 200_000
    a, s = scales(BOOK)
    g = torch.Generator().manual_seed(1)
    xT = a[-1] * x0 + s[-1] * torch.randn(N, generator=g, dtype=torch.float64)
    moments = {}
    out = ddim_sample(constant_x0(x0), BOOK, xT, steps=10, eta=eta, target="x0", generator=g,
                      callback=lambda step: moments.update({step.t: (step.xt.mean().item(), step.xt.var().item())}))
    assert len(moments) == 10
    for t, (mean, var) in moments.items():
        assert abs(mean - a[t] * x0) < 5 * s[t] / math.sqrt(N), (t, mean, a[t] * x0)
        assert abs(var - s[t] ** 2) < 5 * s[t] ** 2 * math.sqrt(2 / (N - 1)), (t, var, s[t] ** 2)
    torch.testing.assert_close(out, torch.full_like(xT, x0), rtol=1e-6, atol=1e-6)  # s_0 = 0: the data


@pytest.mark.parametrize("t", [1, 2, 10, 300, 999])
def test_ddim_kl_is_a_weighted_eps_error_eq_ddim_kl(t):
    """Eq. (ddim-kl): KL(q_σ(x_{t-1} | x_t, x_0) ‖ q_σ(x_{t-1} | x_t, x̂_0)) by torch's kl_divergence of
    the two Gaussians of Eq. (ddim-family), built from random x_0, ε, ε̂, against the weighted squared
    error (√(s_{t-1}² - σ²) - a_{t-1} s_t/a_t)² / (2σ²) ‖ε - ε̂‖², for σ² from 1e-3 s_{t-1}² to all of it."""
    a, s = scales(BOOK)
    g = torch.Generator().manual_seed(t)
    x0, eps, eps_hat = (torch.randn(3, 16, generator=g, dtype=torch.float64) for _ in range(3))
    xt = a[t] * x0 + s[t] * eps
    x0_hat = (xt - s[t] * eps_hat) / a[t]
    for fraction in (1e-3, 0.1, 0.5, 0.9, 1.0):
        sigma = math.sqrt(fraction) * s[t - 1]
        keep = math.sqrt(max(s[t - 1] ** 2 - sigma**2, 0.0))

        def family(x0_):
            mean = a[t - 1] * x0_ + keep * (xt - a[t] * x0_) / s[t]
            return Independent(Normal(mean, torch.full_like(mean, sigma)), 1)

        kl = kl_divergence(family(x0), family(x0_hat))
        weighted = (keep - a[t - 1] * s[t] / a[t]) ** 2 / (2 * sigma**2) * ((eps - eps_hat) ** 2).sum(-1)
        assert (kl > 0).all()
        torch.testing.assert_close(kl, weighted, rtol=1e-9, atol=0)


# --- DDIM with η = 0 is Euler on the probability-flow ODE ---------------------------------------------


@pytest.mark.parametrize("steps, spacing", [(10, "linspace"), (7, "trailing"), ([0, 1, 40, 41, 500, 999], None)])
def test_ddim_eta_0_is_an_euler_step_of_the_probability_flow_ode_eq_ddim_euler(steps, spacing):
    """Eq. (ddim-euler): in y = x/a, κ = s/a one DDIM η = 0 step from t to the next visited t' is
    y' = y + (κ' - κ) ε̂(x, t), written here by hand with ε̂ from the mixture's exact oracle, called here;
    the last step goes to κ = 0."""
    oracle = MixtureOracle(mixture_1d(), BOOK)
    a, s = scales(BOOK)
    xT = torch.linspace(-3, 3, 25, dtype=torch.float64)
    kw = {} if spacing is None else {"spacing": spacing}
    out, seen = visited_states(ddim_sample, oracle, BOOK, xT, steps=steps, eta=0.0, **kw)
    ts = sorted(seen, reverse=True)
    for t, t_next in zip(ts, ts[1:] + [None]):
        eps = oracle(seen[t], torch.full(xT.shape, t, dtype=torch.long))
        kappa = s[t] / a[t]
        kappa_next, a_next = (0.0, 1.0) if t_next is None else (s[t_next] / a[t_next], a[t_next])
        y_next = seen[t] / a[t] + (kappa_next - kappa) * eps
        got = out if t_next is None else seen[t_next]
        torch.testing.assert_close(got, a_next * y_next, rtol=1e-6, atol=1e-6)


# --- the ODE in log-SNR time, and its exponential integrator -------------------------------------------


def test_exact_gaussian_flow_solves_the_ode_in_log_snr_eq_pf_ode_lambda():
    """Eq. (pf-ode-lambda), both forms: for data N(μ, ρ²) the exact flow is x(λ) = a μ + √(a²ρ² + s²) z,
    z fixed, with a² = 1/(1 + e^{-2λ}), s² = 1/(1 + e^{2λ}). Its derivatives in λ by central finite
    differences against e^λ x̂_0 and a (x̂_0 - a x), with x̂_0 from the package's exact oracle at code index t."""
    mu, rho = 0.3, 0.5
    oracle = MixtureOracle(gaussian(mu, rho), BOOK, target="x0")
    a, s = scales(BOOK)
    codes = [0, 1, 5, 50, 300, 700, 999]
    z = torch.linspace(-2, 2, 5, dtype=torch.float64)

    def flow(lam):  # x(λ) and s(λ) on the exact path through z, (len(z),)
        a_, s_ = math.sqrt(1 / (1 + math.exp(-2 * lam))), math.sqrt(1 / (1 + math.exp(2 * lam)))
        return a_ * mu + math.hypot(a_ * rho, s_) * z, s_

    delta = 1e-4
    for t in codes:
        lam = math.log(a[t] / s[t])
        x, _ = flow(lam)
        x0_hat = oracle(x, torch.full(z.shape, t, dtype=torch.long))
        (x_plus, s_plus), (x_minus, s_minus) = flow(lam + delta), flow(lam - delta)
        d_x_over_s = (x_plus / s_plus - x_minus / s_minus) / (2 * delta)
        d_x = (x_plus - x_minus) / (2 * delta)
        torch.testing.assert_close(d_x_over_s, math.exp(lam) * x0_hat, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(d_x, a[t] * (x0_hat - a[t] * x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "steps, spacing", [(5, "linspace"), (17, "trailing"), (40, "leading"), ([0, 7, 300, 999], None)]
)
@pytest.mark.parametrize("sampler", [ddim_sample, dpmpp_2m_sample], ids=["ddim", "dpmpp_2m"])
def test_first_order_step_is_exact_when_x0_prediction_is_constant_eq_dpm_exp_integrator(sampler, steps, spacing):
    """Eq. (dpm-exp-integrator) with x̂_0 ≡ c: in y = x/a, κ = s/a the ODE is dy/dκ = (y - c)/κ, solved
    by y_t - c = (κ_t/κ_T)(y_T - c). Every visited x_t of DDIM (η = 0) and DPM-Solver++(2M) must be
    that closed form, and the output c."""
    c = 0.37
    a, s = scales(BOOK)
    xT = torch.linspace(-2.5, 2.5, 9, dtype=torch.float64)
    kw = {} if spacing is None else {"spacing": spacing}
    out, seen = visited_states(sampler, constant_x0(c), BOOK, xT, steps=steps, target="x0", **kw)
    first = max(seen)
    yT, kappa_T = xT / a[first], s[first] / a[first]
    assert len(seen) == (steps if isinstance(steps, int) else len(steps))
    for t, xt in seen.items():
        kappa = s[t] / a[t]
        torch.testing.assert_close(xt, a[t] * (c + kappa / kappa_T * (yT - c)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, torch.full_like(xT, c), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("steps", [[0, 120, 450, 999], [3, 4, 999], [900, 999]])
def test_dpmpp_2m_first_step_equals_ddim_first_step(steps, target):
    """The first step has no earlier x̂_0, so DPM-Solver++(2M) takes the first-order step of Eq.
    (dpm-exp-integrator): DDIM with η = 0. Same x_T, same steps: the x_t after the first step (the second
    callback) agrees."""
    oracle = MixtureOracle(mixture_1d(), BOOK, target=target)
    xT = torch.linspace(-3, 3, 25, dtype=torch.float64)
    _, ddim = visited_states(ddim_sample, oracle, BOOK, xT, steps=steps, target=target)
    _, dpm = visited_states(dpmpp_2m_sample, oracle, BOOK, xT, steps=steps, target=target)
    second = sorted(steps)[-2]
    assert not torch.allclose(ddim[second], xT, atol=1e-3)
    torch.testing.assert_close(dpm[second], ddim[second], rtol=1e-6, atol=1e-6)


# --- DPM-Solver++(2M) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 10, 20])
def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep_eq_dpm_2m(n):
    """Eq. (dpm-2m) against diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, lower-order
    final step to s = 0) on its own linspace timesteps, with the exact ε* of the book's 1-D mixture.
    diffusers works in float32, hence atol 5e-6."""
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", lower_order_final=True,
        timestep_spacing="linspace")
    scheduler.set_timesteps(n)
    oracle = MixtureOracle(mixture_1d(), BOOK)
    xT = torch.linspace(-3, 3, 41)
    x = xT.clone()
    for t in scheduler.timesteps:
        eps = oracle(x, torch.full(x.shape, int(t), dtype=torch.long))
        x = scheduler.step(eps, t, x).prev_sample
    ours = dpmpp_2m_sample(oracle, BOOK, xT, steps=sorted(int(t) for t in scheduler.timesteps))
    assert len(scheduler.timesteps) == n and x.abs().max() > 0.5
    torch.testing.assert_close(ours, x, rtol=1e-6, atol=5e-6)


def lambda_linear_schedule(T=1000, lam_first=3.0, lam_last=-4.0):
    """A schedule whose λ = log(a/s) falls linearly over the code indices, from 3 to -4."""
    lam = torch.linspace(lam_first, lam_last, T, dtype=torch.float64)
    alpha_bars = torch.sigmoid(2 * lam)  # ᾱ / (1-ᾱ) = e^{2λ}
    return du.schedule_from_betas(1 - alpha_bars / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]]))


def test_dpmpp_2m_is_second_order_and_ddim_first_order_on_a_known_x0_path_eq_dpm_2m():
    """Eq. (dpm-2m) with x̂_0 = sin λ(t), a function of t alone: the exact solution of Eq.
    (dpm-exp-integrator), x_t = (s_t/s_T) x_T + s_t ∫_{λ_T}^{λ_t} e^λ sin λ dλ, by scipy quadrature. Error
    at code index 0 for n = 20 … 160: slope ≈ 2 for DPM-Solver++(2M), ≈ 1 for DDIM (measured 2.09 and
    1.00). The schedule is linear in λ so that linspace steps are even in λ: on the book's schedule
    the last step, τ_1 → 0, spans about ½ log τ_1 in λ, which shrinks only logarithmically with n."""
    schedule = lambda_linear_schedule()
    a, s = scales(schedule)
    lam = [math.log(a_ / s_) for a_, s_ in zip(a, s)]
    lam_table = torch.tensor(lam, dtype=torch.float64)
    model = lambda x, t: torch.sin(lam_table[t]).to(x.dtype)  # noqa: E731  (B,) data, as xT
    xT = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    first = schedule.T - 1
    integral = quad(lambda v: math.exp(v) * math.sin(v), lam[first], lam[0], epsabs=1e-13, epsrel=1e-13)[0]
    exact = s[0] / s[first] * xT + s[0] * integral
    errors = {}
    for name, sampler in {"ddim": ddim_sample, "dpmpp_2m": dpmpp_2m_sample}.items():
        states = [visited_states(sampler, model, schedule, xT, steps=n, spacing="linspace", target="x0")[1]
                  for n in NS]
        errors[name] = [(seen[0] - exact).abs().max().item() for seen in states]
    assert 1.7 <= slope(NS, errors["dpmpp_2m"]) <= 2.3, errors
    assert 0.8 <= slope(NS, errors["ddim"]) <= 1.2, errors
    assert errors["dpmpp_2m"][-1] < errors["ddim"][-1] / 10


def test_orders_on_gaussian_data_against_the_exact_flow_eq_dpm_2m():
    """Eq. (dpm-2m) on data N(0.3, 0.5²) with the exact ε*: the probability-flow ODE keeps
    z = (x - a μ)/√(a² ρ² + s²) constant, so x at code index 0 is known. Book schedule, linspace,
    n = 40 … 160 (n = 20 is not yet in the asymptotic regime, 1.5): slope ≈ 1 for DDIM (0.99),
    ≈ 2 for DPM-Solver++(2M) (1.96)."""
    mu, rho = 0.3, 0.5
    oracle = MixtureOracle(gaussian(mu, rho), BOOK)
    a, s = scales(BOOK)
    first = BOOK.T - 1
    xT = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)
    z = (xT - a[first] * mu) / math.hypot(a[first] * rho, s[first])
    exact = a[0] * mu + math.hypot(a[0] * rho, s[0]) * z
    errors = {}
    for name, sampler in {"ddim": ddim_sample, "dpmpp_2m": dpmpp_2m_sample}.items():
        states = [visited_states(sampler, oracle, BOOK, xT, steps=n, spacing="linspace")[1] for n in NS]
        errors[name] = [(seen[0] - exact).abs().max().item() for seen in states]
    assert 0.8 <= slope(NS[1:], errors["ddim"][1:]) <= 1.2, errors
    assert 1.7 <= slope(NS[1:], errors["dpmpp_2m"][1:]) <= 2.3, errors
    assert errors["dpmpp_2m"][-1] < errors["ddim"][-1] / 2


def test_dpmpp_2m_last_step_returns_the_x0_prediction_of_the_last_visited_step_eq_dpm_2m():
    """The last step goes to s = 0 (λ = ∞), where Eq. (dpm-2m) gives x_0 = D; with the first-order D
    (diffusers' lower_order_final) the output is x̂_0 of the last visited step, as DDIM's is."""
    oracle = MixtureOracle(mixture_1d(), BOOK)
    xT = torch.linspace(-3, 3, 25, dtype=torch.float64)
    for steps, spacing in [(10, "linspace"), (10, "trailing"), (3, "leading")]:
        seen = {}
        out = dpmpp_2m_sample(oracle, BOOK, xT, steps=steps, spacing=spacing,
                              callback=lambda step: seen.update({step.t: step.x0}))
        torch.testing.assert_close(out, seen[min(seen)], rtol=1e-12, atol=1e-12)


# --- DDIM shrinks Gaussian data -------------------------------------------------------------------


def test_ddim_shrinks_unit_gaussian_data_by_cos_of_the_angle_steps_eq_ddim_shrink():
    """Eq. (ddim-shrink): for x_0 ~ N(0, 1), with a = cos θ, s = sin θ, the exact x̂_0 is a x and a DDIM
    η = 0 step maps x → cos(θ_t - θ_t') x, so the output variance is ∏ cos²(Δθ_i) over the visited steps
    (the last one θ_{τ_0} → 0). Monte Carlo, 200 000 samples, within 4 standard errors."""
    oracle = MixtureOracle(gaussian(0.0, 1.0), BOOK)
    a, s = scales(BOOK)
    theta = [math.atan2(s_, a_) for a_, s_ in zip(a, s)]
    N = 200_000
    xT = torch.randn(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    factors = {}
    for n in (5, 10, 50):
        ts = du.timestep_subsequence(BOOK.T, n, "linspace").tolist()
        angles = [0.0] + [theta[t] for t in ts]  # increasing, ending at θ_{T-1}
        factor = math.prod(math.cos(hi - lo) ** 2 for lo, hi in zip(angles, angles[1:]))
        out = ddim_sample(oracle, BOOK, xT, steps=n, spacing="linspace", eta=0.0)
        se = factor * math.sqrt(2 / (N - 1))  # SE of a sample variance of N(0, factor)
        assert abs(out.var().item() - factor) < 4 * se, (n, out.var().item(), factor, se)
        torch.testing.assert_close(out, math.sqrt(factor) * xT, rtol=1e-5, atol=1e-6)  # the map itself
        factors[n] = factor
    assert factors[5] < factors[10] < 0.99 and factors[10] < factors[50] < 1
