"""Tests of ddpm_utils.forward: the Markov step q(x_t | x_{t-1}) and the closed form q(x_t | x_0).

The closed form is checked against the iterated chain by Monte Carlo, with ᾱ computed here
by a Python loop over betas written out by hand.
"""

import math

import pytest
import torch
from scipy import stats

from ddpm_utils import q_mean_variance, q_sample, q_step, schedule_from_betas
from reference import linear_betas, loop_alpha_bars

T = 50
BETAS = [1e-3 + (0.2 - 1e-3) * i / (T - 1) for i in range(T)]  # a short linear chain, ᾱ_T ≈ 6e-3


ABAR = loop_alpha_bars(BETAS)  # ABAR[t] = ᾱ at code index t (paper t + 1)


@pytest.fixture(scope="module")
def schedule():
    return schedule_from_betas(BETAS)


def full(n, value):
    return torch.full((n,), value, dtype=torch.long)


def test_iterated_chain_moments_match_closed_form_eq_forward_closed_form_ho_eq4(schedule):
    """Book Eqs. (forward-step) → (forward-closed-form), Ho et al. Eqs. 2 → 4.

    Apply q_step t+1 times (code indices 0..t) to N copies of a fixed x_0 and compare the
    sample mean and variance of x_t with √ᾱ_t x_0 and 1-ᾱ_t. The chain's x_t is exactly
    Gaussian, so SE(mean) = √(var/N) and SE(var) = var·√(2/(N-1)); tolerance 5 SE.
    """
    N = 40_000
    x0 = torch.tensor([-1.5, 0.0, 0.7, 2.0])  # (D,)
    x = x0.expand(N, 4).clone()  # (N, D)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for t in range(T):
        x = q_step(schedule, x, full(N, t), generator=g)
        if t not in (0, 4, 19, 49):
            continue
        mean, var = math.sqrt(ABAR[t]) * x0.double(), 1.0 - ABAR[t]
        mc_mean, mc_var = x.double().mean(0), x.double().var(0)
        assert (mc_mean - mean).abs().max() < 5 * math.sqrt(var / N)
        assert (mc_var - var).abs().max() < 5 * var * math.sqrt(2 / (N - 1))
        # the package's closed form describes the same Gaussian (same 5 SE tolerance)
        q = q_mean_variance(schedule, x0.expand(1, 4), full(1, t))
        assert (mc_mean - q.mean[0].double()).abs().max() < 5 * math.sqrt(var / N)
        assert (mc_var - q.variance.double().flatten()).abs().max() < 5 * var * math.sqrt(2 / (N - 1))
        checked += 1
    assert checked == 4


def test_q_sample_moments_match_iterated_chain_eq_forward_reparam(schedule):
    """Book Eq. (forward-reparam): x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε has the chain's moments (5 SE)."""
    N, t = 40_000, 19
    x0 = torch.tensor([-1.5, 0.0, 0.7, 2.0])
    g = torch.Generator().manual_seed(1)
    xt = q_sample(schedule, x0.expand(N, 4).contiguous(), full(N, t), generator=g).double()
    var = 1.0 - ABAR[t]
    assert (xt.mean(0) - math.sqrt(ABAR[t]) * x0.double()).abs().max() < 5 * math.sqrt(var / N)
    assert (xt.var(0) - var).abs().max() < 5 * var * math.sqrt(2 / (N - 1))


def test_q_mean_variance_equals_closed_form_to_float32_precision_eq_forward_closed_form():
    """Book Eq. (forward-closed-form) on the book's schedule (linear, T = 1000), every t.

    float32 storage allows a relative error of about 1e-7; rtol 1e-5 leaves a wide margin. The
    hard case is t = 0, where 1-ᾱ_1 = β_1 = 1e-4 must not be formed as 1 - float32(ᾱ_1).
    """
    T_ = 1000
    betas = [1e-4 + (0.02 - 1e-4) * i / (T_ - 1) for i in range(T_)]
    abar = torch.tensor(loop_alpha_bars(betas), dtype=torch.float64)
    x0 = torch.ones(T_, dtype=torch.float64)
    q = q_mean_variance(schedule_from_betas(betas), x0, torch.arange(T_))
    torch.testing.assert_close(q.mean, abar.sqrt(), rtol=1e-5, atol=0)
    torch.testing.assert_close(q.variance, 1 - abar, rtol=1e-5, atol=0)
    # near ᾱ = 0 the log variance is ≈ -4e-5, known to ~6e-8 absolute in float32: hence the atol
    torch.testing.assert_close(q.log_variance, torch.log1p(-abar), rtol=1e-5, atol=1e-7)


def test_q_mean_variance_log_variance_and_shapes(schedule):
    x0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    q = q_mean_variance(schedule, x0, torch.tensor([0, 10, 49]))
    assert q.mean.shape == x0.shape and q.variance.shape == (3, 1, 1, 1)
    torch.testing.assert_close(q.log_variance, torch.log(q.variance))


@pytest.mark.parametrize("shape", [(5,), (5, 3), (5, 2, 4, 4)])
def test_q_sample_broadcasts_per_example_t_eq_forward_reparam(schedule, shape):
    """Each example b uses its own ᾱ_{t_b}: compare with the scalar formula per example."""
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.tensor([0, 49, 7, 7, 23])
    xt = q_sample(schedule, x0, t, noise=noise)
    assert xt.shape == shape
    for b in range(5):
        abar = ABAR[int(t[b])]
        expected = math.sqrt(abar) * x0[b].double() + math.sqrt(1 - abar) * noise[b].double()
        torch.testing.assert_close(xt[b].double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(5,), (5, 3), (5, 2, 4, 4)])
def test_q_step_broadcasts_per_example_t_eq_forward_step(schedule, shape):
    """Book Eq. (forward-step), Ho et al. Eq. 2: x_t = √(1-β_t) x_{t-1} + √β_t ε, per example."""
    g = torch.Generator().manual_seed(4)
    x_prev, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.tensor([0, 49, 7, 8, 23])
    xt = q_step(schedule, x_prev, t, noise=noise)
    for b in range(5):
        beta = BETAS[int(t[b])]
        expected = math.sqrt(1 - beta) * x_prev[b].double() + math.sqrt(beta) * noise[b].double()
        torch.testing.assert_close(xt[b].double(), expected, rtol=1e-6, atol=1e-6)


def test_q_sample_is_deterministic_given_noise_or_seed(schedule):
    x0, t = torch.linspace(-1, 1, 6), torch.arange(6)
    noise = torch.randn(6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(q_sample(schedule, x0, t, noise=noise), q_sample(schedule, x0, t, noise=noise))
    a = q_sample(schedule, x0, t, generator=torch.Generator().manual_seed(6))
    b = q_sample(schedule, x0, t, generator=torch.Generator().manual_seed(6))
    c = q_sample(schedule, x0, t, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_forward_keeps_float64_data_in_float64(schedule):
    x0 = torch.zeros(4, 3, dtype=torch.float64)
    assert q_sample(schedule, x0, torch.arange(4), generator=torch.Generator().manual_seed(0)).dtype == torch.float64
    assert q_step(schedule, x0, torch.arange(4), generator=torch.Generator().manual_seed(0)).dtype == torch.float64


@pytest.mark.parametrize("bad_t", [-1, T])
@pytest.mark.parametrize("fn", [q_sample, q_step, q_mean_variance])
def test_out_of_range_t_raises(schedule, fn, bad_t):
    with pytest.raises(ValueError, match=r"\[0, 49\]"):
        fn(schedule, torch.zeros(2, 3), torch.tensor([0, bad_t]))


@pytest.mark.parametrize("fn", [q_sample, q_step])
def test_noise_of_wrong_shape_raises(schedule, fn):
    with pytest.raises(ValueError, match="noise has shape"):
        fn(schedule, torch.zeros(2, 3), torch.tensor([0, 1]), noise=torch.zeros(2, 4))


@pytest.mark.parametrize("fn", [q_sample, q_step, q_mean_variance])
def test_data_on_another_device_than_the_schedule_raises(schedule, fn):
    """No silent moves between devices; a `meta` tensor plays the other device on CPU."""
    with pytest.raises(ValueError, match="schedule.to"):
        fn(schedule, torch.zeros(2, 3, device="meta"), torch.tensor([0, 1]))


def test_batch_size_mismatch_between_x_and_t_raises(schedule):
    with pytest.raises(ValueError, match="one timestep per example"):
        q_sample(schedule, torch.zeros(3, 2), torch.tensor([0, 1]))


@pytest.mark.parametrize("v0", [0.04, 4.0])
def test_variance_relaxes_to_one_eq_variance_preserving(schedule, v0):
    """Book Eq. (variance-preserving): v_t = 1 + ᾱ_t (v_0 - 1) for data of variance v_0.

    Random data (not a fixed x_0) of variance v_0, run through the chain with q_step; the sample
    variance at several t matches the formula within 5 SE (SE of a Gaussian variance: v·√(2/(N-1));
    x_t is a sum of Gaussians here, so that SE applies).
    """
    N = 40_000
    g = torch.Generator().manual_seed(11)
    x = math.sqrt(v0) * torch.randn(N, 2, generator=g)
    for t in range(T):
        x = q_step(schedule, x, full(N, t), generator=g)
        if t in (0, 9, 49):
            expected = 1.0 + ABAR[t] * (v0 - 1.0)
            assert abs(x.double().var(0).mean().item() - expected) < 5 * expected * math.sqrt(2 / (N - 1))


def merged_noise_weights(betas, t):
    """w_s = √(ᾱ_t/ᾱ_s) √β_s, s = 1..t (code 0..t), the weights of Eq. (merged-noise), float64 loop."""
    abar = loop_alpha_bars(betas)
    return [math.sqrt(abar[t] / abar[s] * betas[s]) for s in range(t + 1)]


@pytest.mark.parametrize("betas", [BETAS, linear_betas(1000)], ids=["T50_large_betas", "linear_T1000"])
def test_chain_equals_closed_form_pathwise_with_merged_noise_eq_merged_noise(betas):
    """Book Eq. (merged-noise): after t steps of q_step with step noises ε_1 … ε_t, pathwise (the same
    draws, not in distribution), x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε̄_t with
    ε̄_t = Σ_s √(ᾱ_t/ᾱ_s) √β_s ε_s / √(1-ᾱ_t), whose weights' squares sum to 1 - ᾱ_t (telescoping).

    ᾱ and the weights come from a float64 Python loop over the betas. The chain runs on float64 data
    but the package's float32-stored coefficients (relative error ~6e-8 per step), so the tolerance
    grows with the number of steps: 1e-6 + 1e-8·t on values of order 1 (1.1e-5 at t = 1000, where the
    measured difference is 2e-6). A coefficient off by one step or a wrong exponent moves x_t by 1e-3.
    """
    T_ = len(betas)
    schedule = schedule_from_betas(betas)
    abar = loop_alpha_bars(betas)
    g = torch.Generator().manual_seed(13)
    x0 = 1.5 * torch.randn(3, 4, generator=g, dtype=torch.float64)  # (B, D)
    step_noise = torch.randn(T_, 3, 4, generator=g, dtype=torch.float64)  # ε_s for code s = 0..T-1
    checks = {0, 1, 9, T_ // 2, T_ - 1}
    x = x0
    for t in range(T_):
        x = q_step(schedule, x, torch.full((3,), t), noise=step_noise[t])
        if t not in checks:
            continue
        w = torch.tensor(merged_noise_weights(betas, t), dtype=torch.float64)  # (t+1,)
        assert (w**2).sum().item() == pytest.approx(1 - abar[t], rel=1e-12)  # Σ_s (ᾱ_t/ᾱ_s) β_s = 1 - ᾱ_t
        eps_bar = (w[:, None, None] * step_noise[: t + 1]).sum(0) / math.sqrt(1 - abar[t])
        closed_form = math.sqrt(abar[t]) * x0 + math.sqrt(1 - abar[t]) * eps_bar
        torch.testing.assert_close(x, closed_form, rtol=0, atol=1e-6 + 1e-8 * t)
        checks.remove(t)
    assert not checks


def two_mode_x0(n, g):
    """The book's 1-D toy, drawn here: weights 0.3/0.7, means -1/1, stds 0.15/0.25 (far from Gaussian)."""
    first = torch.rand(n, generator=g, dtype=torch.float64) < 0.3
    z = torch.randn(n, generator=g, dtype=torch.float64)
    return torch.where(first, -1.0 + 0.15 * z, 1.0 + 0.25 * z)


@pytest.mark.parametrize(
    "betas, t", [([0.1, 0.3], 1), (BETAS, 0), (BETAS, 19), (BETAS, 49)], ids=["two_steps", "t1", "t20", "t50"]
)
def test_merged_noise_is_standard_normal_and_independent_of_x0_eq_merge_gaussians(betas, t):
    """Book Eq. (merge-gaussians) and the claim that ε̄_t ~ N(0, I) independently of x_0.

    x_0 from a two-mode mixture; x_t by t+1 calls of q_step (fresh noise each step), and separately by
    q_sample. The squared weights of Eq. (merged-noise) sum to 1 (float64 loop). Inverting each x_t,
    with ᾱ from a float64 loop:
    * the unnormalised merged noise x_t - √ᾱ_t x_0 has variance 1 - ᾱ_t (1 - α₁α₂ = 0.37 for the two
      steps α = 0.9, 0.7), within 5 SE;
    * ε̄_t = (x_t - √ᾱ_t x_0)/√(1-ᾱ_t) passes a Kolmogorov–Smirnov test against N(0, 1) (p > 1e-4,
      fixed seed, N = 100 000; the variance check alone rejects a 1.1 % error in the standard deviation);
    * ε̄_t is uncorrelated with x_0 and with x_0², and ε̄_t² with x_0² (|r| < 5/√N).
    """
    N = 100_000
    schedule = schedule_from_betas(betas)
    abar = loop_alpha_bars(betas)
    if len(betas) == 2:
        assert abar[1] == pytest.approx(0.9 * 0.7, rel=1e-15)
    weights = merged_noise_weights(betas, t)  # Eq. (merge-gaussians): the squared weights of ε̄_t sum to 1
    assert sum(w * w for w in weights) / (1 - abar[t]) == pytest.approx(1.0, rel=1e-12)
    g = torch.Generator().manual_seed(12 + t)
    x0 = two_mode_x0(N, g)
    x = x0
    for s in range(t + 1):
        x = q_step(schedule, x, torch.full((N,), s), generator=g)
    by_chain = x
    by_closed_form = q_sample(schedule, x0, torch.full((N,), t), generator=g)
    var = 1 - abar[t]
    for xt in (by_chain, by_closed_form):
        unnormalised = xt - math.sqrt(abar[t]) * x0
        assert abs(unnormalised.var().item() - var) < 5 * var * math.sqrt(2 / (N - 1))
        eps_bar = unnormalised / math.sqrt(var)
        assert stats.kstest(eps_bar.numpy(), "norm").pvalue > 1e-4
        for a, b in [(eps_bar, x0), (eps_bar, x0**2), (eps_bar**2, x0**2)]:
            r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
            assert abs(r) < 5 / math.sqrt(N), r
