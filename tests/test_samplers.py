"""Tests of ddpm_utils.samplers: ancestral DDPM (Ho et al. Algorithm 2) and DDIM (Song et al. 2021).

With the exact predictor ε* of a Gaussian mixture (MixtureOracle), a correct sampler must
reproduce the data distribution; the DDIM update with η = 1 on all T steps must equal the DDPM
step with σ_t² = β̃_t (Song et al. Eq. 16).
"""

import math
from fractions import Fraction

import pytest
import torch
from torch.distributions import Normal

from ddpm_utils import (
    GaussianMixture,
    MixtureOracle,
    ddim_sample,
    ddpm_sample,
    make_schedule,
    respace,
    schedule_from_betas,
    timestep_subsequence,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def two_mode_mixture():
    """The book's 1-D toy: weights 0.3/0.7, means -1/1, stds 0.15/0.25."""
    return GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.15], [0.25]]))


def population_moments():
    """Mean, variance, 4th central moment and P(x > 0) of the mixture, in closed form."""
    w, mu, sd = [0.3, 0.7], [-1.0, 1.0], [0.15, 0.25]
    mean = sum(wk * mk for wk, mk in zip(w, mu))
    var = sum(wk * (sk**2 + mk**2) for wk, mk, sk in zip(w, mu, sd)) - mean**2
    mu4 = sum(wk * ((mk - mean) ** 4 + 6 * (mk - mean) ** 2 * sk**2 + 3 * sk**4) for wk, mk, sk in zip(w, mu, sd))
    right = sum(wk * (1 - Normal(mk, sk).cdf(torch.tensor(0.0)).item()) for wk, mk, sk in zip(w, mu, sd))
    return mean, var, mu4, right


def network_like(D, schedule, seed):
    """A fixed random two-layer network with a time embedding, added to ε*(x_t) = √(1-ᾱ_t) x_t
    of N(0, I) data so that the samples stay of order 1 (an untrained network's would explode)."""
    g = torch.Generator().manual_seed(seed)
    w1, b1 = torch.randn(D, 16, generator=g) / math.sqrt(D), torch.randn(16, generator=g)
    emb, w2 = torch.randn(schedule.T, 16, generator=g), torch.randn(16, D, generator=g) / 4

    def model(x, t):
        flat = x.reshape(x.shape[0], D)
        eps = schedule.sqrt_one_minus_alpha_bars[t, None] * flat + 0.3 * torch.tanh(flat @ w1 + b1 + emb[t]) @ w2
        return eps.reshape(x.shape)

    return model


# --- step subsequences and respacing ----------------------------------------------------------


def test_timestep_subsequence_none_int_and_sequence():
    assert torch.equal(timestep_subsequence(50, None), torch.arange(50))
    for n in [2, 3, 7, 10, 49, 50]:
        ts = timestep_subsequence(50, n)
        assert ts.dtype == torch.long and len(ts) == n
        assert ts[0] == 0 and ts[-1] == 49 and (ts[1:] > ts[:-1]).all()
    assert timestep_subsequence(50, 1).tolist() == [49]
    assert timestep_subsequence(50, [0, 10, 49]).tolist() == [0, 10, 49]


@pytest.mark.parametrize("steps", [0, 51, [], [3, 3, 10], [10, 5], [-1, 5], [0, 50], [[0, 1]]])
def test_timestep_subsequence_rejects_bad_steps(steps):
    with pytest.raises(ValueError):
        timestep_subsequence(50, steps)


def spacing_by_definition(T, n, spacing):
    """Lin et al. 2024 Table 2 as diffusers' DDIMScheduler.set_timesteps writes them, in exact
    rationals, increasing. round() of a Fraction rounds half to even, as numpy does."""
    if spacing == "linspace":  # np.linspace(0, T - 1, n).round()
        return [Fraction(j * (T - 1), n - 1) for j in range(n)]
    if spacing == "trailing":  # np.round(np.arange(T, 0, -T / n)) - 1
        return [Fraction(round(Fraction(j * T, n)) - 1) for j in range(1, n + 1)]
    return [Fraction(j * (T // n)) for j in range(n)]  # leading: np.arange(n) * (T // n), steps_offset 0


@pytest.mark.parametrize("spacing", ["linspace", "trailing", "leading"])
def test_timestep_spacing_matches_its_definition_for_every_T_and_n(spacing):
    """Every T ≤ 40 and n ≥ 2. linspace is the nearest integer to j (T-1)/(n-1); where that value
    is exactly k + 1/2, float rounding decides (torch's and numpy's can differ), so either
    neighbour passes there. trailing and leading are exact."""
    for T in range(2, 41):
        for n in range(2, T + 1):
            got = timestep_subsequence(T, n, spacing).tolist()
            want = spacing_by_definition(T, n, spacing)
            assert len(got) == n, (T, n)
            for a, x in zip(got, want):
                tie = spacing == "linspace" and x.denominator == 2
                assert a == round(x) or (tie and abs(a - x) == Fraction(1, 2)), (T, n, got)


@pytest.mark.parametrize("n", [1, 2, 10, 20, 25, 50, 100, 250, 500, 1000])
@pytest.mark.parametrize("spacing", ["linspace", "trailing", "leading"])
def test_timestep_spacing_matches_diffusers_ddim_scheduler(spacing, n):
    """diffusers' DDIMScheduler(timestep_spacing=…).set_timesteps(n) at T = 1000, reversed. The ends
    are the point: trailing always starts at T-1 and (for n < 2T/3) never visits t = 0; linspace
    visits both; leading starts at 0 and falls short of T-1. One deliberate difference: linspace
    with n = 1 gives [T-1] here (diffusers gives [0], where x_T ~ N(0, I) would be wrong)."""
    diffusers = pytest.importorskip("diffusers")
    T = 1000
    ts = timestep_subsequence(T, n, spacing)
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    scheduler.set_timesteps(n)
    theirs = scheduler.timesteps.flip(0).tolist()
    if spacing == "linspace" and n == 1:
        assert ts.tolist() == [T - 1] and theirs == [0]
        return
    assert ts.dtype == torch.long and ts.tolist() == theirs
    if spacing == "trailing":
        assert ts[-1] == T - 1 and (ts[0] > 0 or n > 2 * T / 3)
    elif spacing == "linspace":
        assert ts[0] == 0 and ts[-1] == T - 1
    else:
        assert ts[0] == 0 and (ts[-1] < T - 1 or n == T)


def test_trailing_spacing_at_an_exact_half_rounds_to_even():
    """T = 1000, n = 16: T/n = 62.5, so τ_j = round(62.5 j) - 1 meets exact halves (937.5 → 938,
    812.5 → 812), the cases that separate half-to-even (numpy's, diffusers') from half-up."""
    ts = timestep_subsequence(1000, 16, "trailing").flip(0).tolist()
    assert ts[:4] == [999, 937, 874, 811]


@pytest.mark.parametrize(
    "steps, spacing", [(None, "linspace"), ([0, 5, 9], "trailing"), (5, "uniform"), (5, "Trailing")]
)
def test_timestep_subsequence_rejects_bad_spacing(steps, spacing):
    """A spacing only means something for an int number of steps, and must be a known name."""
    with pytest.raises(ValueError, match="spacing"):
        timestep_subsequence(10, steps, spacing)


@pytest.mark.parametrize(
    "spacing, visited",
    [(None, [19, 15, 11, 8, 4, 0]), ("linspace", [19, 15, 11, 8, 4, 0]),
     ("trailing", [19, 16, 12, 9, 6, 2]), ("leading", [15, 12, 9, 6, 3, 0])],
)
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_visit_the_steps_of_the_chosen_spacing(sampler, spacing, visited):
    """T = 20, n = 6: linspace round(3.8 j), trailing round(10 j / 3) - 1, leading 3 j — worked by
    hand. No spacing means linspace, to the bit."""
    s = make_schedule(T=20)
    model = network_like(2, s, seed=27)

    def run(**kwargs):
        calls = []
        fn, extra = (ddpm_sample, {}) if sampler == "ddpm" else (ddim_sample, {"eta": 1.0})
        out = fn(model, s, (8, 2), steps=6, generator=torch.Generator().manual_seed(28),
                 callback=lambda step: calls.append(step.t), **extra, **kwargs)
        return out, calls

    out, calls = run() if spacing is None else run(spacing=spacing)
    assert calls == visited and torch.isfinite(out).all()
    if spacing == "linspace":
        assert torch.equal(out, run()[0])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_respace_of_the_full_grid_reproduces_the_betas(kind):
    """Visiting every step, the respaced chain is the original one. (respace starts from the
    float32 betas; at the cosine clip β = 0.999, 1-β keeps only ~1e-4 of relative precision,
    which shows in the last ᾱ: hence rtol 1e-4 there.)"""
    s = make_schedule(kind, T=200)
    full = respace(s, torch.arange(200))
    torch.testing.assert_close(full.betas, s.betas, rtol=1e-5, atol=0)
    torch.testing.assert_close(full.alpha_bars, s.alpha_bars, rtol=1e-5 if kind == "linear" else 1e-4, atol=0)


def test_respaced_alpha_bar_at_step_i_is_the_original_alpha_bar_at_tau_i():
    """Nichol & Dhariwal Sec. 4: β'_i = 1 - ᾱ_{τ_i}/ᾱ_{τ_{i-1}}, so ᾱ'_i = ᾱ_{τ_i}."""
    s = make_schedule(T=1000)
    ts = timestep_subsequence(1000, 13)
    short = respace(s, ts)
    assert short.T == 13 and short.kind == "linear-respaced"
    torch.testing.assert_close(short.alpha_bars, s.alpha_bars[ts], rtol=1e-5, atol=0)
    assert short.alpha_bars_prev[0] == 1


# --- DDIM with η = 1 is DDPM --------------------------------------------------------------------

SHORT = make_schedule("linear", T=100, beta_start=1e-4, beta_end=0.2)


@pytest.mark.parametrize("kind", ["oracle", "network"])
def test_ddim_eta_1_on_all_steps_equals_ddpm_with_beta_tilde_song_eq16(kind):
    """Song et al. Eq. 16: with η = 1 and every step visited, σ_t² = β̃_t and the DDIM mean is
    the posterior mean at x̂_0, so both samplers make the same draws and the same moves."""
    if kind == "oracle":
        model, shape = MixtureOracle(two_mode_mixture(), SHORT), (512,)
    else:
        model, shape = network_like(3, SHORT, seed=0), (512, 3)
    xT = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    ddpm = ddpm_sample(model, SHORT, xT, variance="beta_tilde", generator=torch.Generator().manual_seed(2))
    ddim = ddim_sample(model, SHORT, xT, steps=None, eta=1.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_strided_ddpm_equals_ddim_eta_1_on_the_same_steps():
    """On a subsequence, DDPM runs the respaced chain; DDIM with η = 1 gets there by Eq. 16 on the
    original ᾱ. Same draws, same samples: checks `respace` against an independent route."""
    model = network_like(2, SHORT, seed=3)
    xT = torch.randn(256, 2, generator=torch.Generator().manual_seed(4))
    ddpm = ddpm_sample(model, SHORT, xT, steps=10, generator=torch.Generator().manual_seed(5))
    ddim = ddim_sample(model, SHORT, xT, steps=10, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("s_t", [(0, 1), (1, 2), (2, 3), (5, 6), (0, 4), (3, 9)])
def test_ddim_noise_scale_near_t_0_is_exact_song_eq16(kind, s_t):
    """Song et al. Eq. 16, σ² = η² (1-ᾱ_s)/(1-ᾱ_t) · (1 - ᾱ_t/ᾱ_s), from t to the previous visited
    step s, against exact rational arithmetic on the schedule's own (float32) betas. With x_t = 0
    and ε̂ = 0 the step gives σ z exactly, so σ is measured to float64 precision. Near t = 0
    ᾱ_t/ᾱ_s is within β of 1, and 1 minus a ratio of float32 ᾱ is off by up to 3e-4; the
    float64 log-space route is good to ~1e-15, hence rtol 1e-10."""
    s, t = s_t
    schedule = make_schedule(kind)
    factors = [1 - Fraction(float(b)) for b in schedule.betas[: t + 1]]  # 1 - β, exactly
    alpha_bar_s, alpha_bar_t = math.prod(factors[: s + 1]), math.prod(factors)
    sigma2 = (1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - math.prod(factors[s + 1 :]))
    seen = {}
    zero = lambda x, t_batch: torch.zeros_like(x)  # noqa: E731
    xT = torch.zeros(64, dtype=torch.float64)
    ddim_sample(zero, schedule, xT, steps=[s, t], eta=1.0, generator=torch.Generator().manual_seed(30),
                callback=lambda step: seen.update({step.t: step.xt}))
    z = torch.randn(64, generator=torch.Generator().manual_seed(30), dtype=torch.float64)
    torch.testing.assert_close(seen[s] / z, torch.full_like(z, math.sqrt(sigma2)), rtol=1e-10, atol=0)


def test_ddim_eta_0_is_deterministic():
    """η = 0: no noise after x_T, so the generator has no effect."""
    model = network_like(2, SHORT, seed=6)
    xT = torch.randn(64, 2, generator=torch.Generator().manual_seed(7))
    a = ddim_sample(model, SHORT, xT, steps=20, eta=0.0, generator=torch.Generator().manual_seed(8))
    b = ddim_sample(model, SHORT, xT, steps=20, eta=0.0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    c = ddim_sample(model, SHORT, xT, steps=20, eta=0.5, generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("target", ["x0", "v"])
def test_samplers_give_the_same_samples_whatever_the_oracle_predicts(target):
    """The oracle's ε, x_0 and v outputs describe the same x̂_0, so sampling must not change."""
    mix = two_mode_mixture()
    xT = torch.randn(256, generator=torch.Generator().manual_seed(10))
    for sample in (lambda m, tgt: ddim_sample(m, SHORT, xT, steps=20, target=tgt),
                   lambda m, tgt: ddpm_sample(m, SHORT, xT, target=tgt, generator=torch.Generator().manual_seed(11))):
        ref = sample(MixtureOracle(mix, SHORT), "eps")
        got = sample(MixtureOracle(mix, SHORT, target=target), target)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


# --- the exact predictor reproduces the data ----------------------------------------------------

N = 20_000
BOOK = make_schedule()  # linear, T = 1000


def run_sampler(name):
    oracle = MixtureOracle(two_mode_mixture(), BOOK)
    g = torch.Generator().manual_seed(12)
    if name == "ddpm-1000-steps":
        return ddpm_sample(oracle, BOOK, (N,), generator=g)
    if name == "ddim-eta0-250-steps":
        return ddim_sample(oracle, BOOK, (N,), steps=250, eta=0.0, generator=g)
    # With σ² = β̃ and 100 steps the variance comes out ≈ 0.863 (≈ -5 SE): the true reverse
    # step's variance is β̃ plus a term from Var[x_0 | x_t] that large steps make visible (Ho et
    # al. Sec. 3.2: β̃ and β are the two extremes). σ² = β holds at 100 steps.
    return ddpm_sample(oracle, BOOK, (N,), steps=100, variance="beta", generator=g)


@pytest.mark.parametrize("name", ["ddpm-1000-steps", "ddim-eta0-250-steps", "ddpm-beta-100-strided-steps"])
def test_sampling_with_the_exact_eps_reproduces_the_mixture_ho_alg2_song_eq12(name):
    """Ho et al. Algorithm 2 / Song et al. Eq. 12 with ε*: mean, variance and the fraction in the
    right-hand mode (≈ 0.7) match the data within 5 standard errors of N = 20 000 samples:
    SE(mean) = √(var/N), SE(var) = √((μ₄ - var²)/N), SE(fraction) = √(p(1-p)/N).
    DDIM's discretisation bias at 250 steps is below 1 SE (about 2.5 SE at 100 steps)."""
    mean, var, mu4, right = population_moments()
    x = run_sampler(name).double()
    assert x.shape == (N,) and torch.isfinite(x).all()
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / N)
    assert abs(x.var().item() - var) < 5 * math.sqrt((mu4 - var**2) / N)
    assert abs((x > 0).double().mean().item() - right) < 5 * math.sqrt(right * (1 - right) / N)


def test_mixture_population_moments_by_hand():
    """The reference moments used above: E x = 0.4, Var x = 0.8905, P(x > 0) ≈ 0.7."""
    mean, var, _, right = population_moments()
    assert mean == pytest.approx(0.4) and var == pytest.approx(0.8905) and right == pytest.approx(0.7, abs=1e-4)
    mix = two_mode_mixture()
    assert mix.mean().item() == pytest.approx(mean, rel=1e-6) and mix.variance().item() == pytest.approx(var, rel=1e-6)


# --- the last step (the callback's order, shapes and t for every sampler: test_sampler_contract.py) ---


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_adds_no_noise_on_the_last_step_ho_alg2_line4(variance):
    """Ho et al. Algorithm 2: x_0 = μ_θ(x_1, 1), no z. The posterior mean at code index 0 is x̂_0
    itself (ᾱ_0 = 1), so the output must equal the x̂_0 the callback saw at t = 0."""
    s = make_schedule(T=20)
    seen = {}
    out = ddpm_sample(network_like(3, s, seed=15), s, (64, 3), variance=variance,
                      generator=torch.Generator().manual_seed(16), callback=lambda step: seen.update({step.t: step.x0}))
    torch.testing.assert_close(out, seen[0], rtol=1e-6, atol=1e-6)


def test_ddim_with_eta_1_adds_no_noise_on_the_last_step():
    s = make_schedule(T=20)
    seen = {}
    out = ddim_sample(network_like(3, s, seed=17), s, (64, 3), steps=None, eta=1.0,
                      generator=torch.Generator().manual_seed(18), callback=lambda step: seen.update({step.t: step.x0}))
    torch.testing.assert_close(out, seen[0], rtol=1e-6, atol=1e-6)


# --- chains (data ranks, x_T, devices and bad input for every sampler: test_sampler_contract.py) ---


def test_schedule_from_betas_chain_runs_with_explicit_betas():
    """A chain given by explicit betas serves the samplers like a named schedule does."""
    s = schedule_from_betas([0.1, 0.2, 0.3])
    out = ddpm_sample(network_like(1, s, seed=25), s, (8,), generator=torch.Generator().manual_seed(26))
    assert out.shape == (8,) and torch.isfinite(out).all()
