"""Tests of ddpm_utils.forward: the Markov step q(x_t | x_{t-1}) and the closed form q(x_t | x_0).

The closed form is checked against the iterated chain by Monte Carlo, with ᾱ computed here
by a Python loop over betas written out by hand.
"""

import math

import pytest
import torch

from ddpm_utils import q_mean_variance, q_sample, q_step, schedule_from_betas
from reference import loop_alpha_bars

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


def test_two_steps_merge_into_one_gaussian_eq_merge_gaussians():
    """Book Eq. (merge-gaussians): √(α₂(1-α₁)) ε̄ + √(1-α₂) ε₂ has variance 1 - α₁α₂ and is Gaussian.

    Two independent standard normals, weighted as in the induction step; the sample variance
    matches 1 - ᾱ_2 (5 SE) and the standardised fourth moment is 3, as for a Gaussian (5 SE,
    SE of the sample kurtosis ≈ √(24/N)).
    """
    alpha1, alpha2, N = 0.9, 0.7, 200_000
    g = torch.Generator().manual_seed(12)
    eps_bar, eps2 = torch.randn(N, generator=g, dtype=torch.float64), torch.randn(N, generator=g, dtype=torch.float64)
    merged = math.sqrt(alpha2 * (1 - alpha1)) * eps_bar + math.sqrt(1 - alpha2) * eps2
    var = 1 - alpha1 * alpha2
    assert abs(merged.var().item() - var) < 5 * var * math.sqrt(2 / (N - 1))
    kurtosis = ((merged / merged.std()) ** 4).mean().item()
    assert abs(kurtosis - 3.0) < 5 * math.sqrt(24 / N)
