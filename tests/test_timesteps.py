"""Tests of ddpm_utils.timesteps: importance sampling of t (Nichol & Dhariwal 2021, Sec. 3.3).

Independent references: exact enumeration over t, Monte Carlo over many draws, and losses with a
known second moment fed to the sampler.
"""

import math

import pytest
import torch

from ddpm_utils.timesteps import ImportanceSampler

T = 8


def warmed_up(losses_per_t, rounds=12, decay=0.9):
    """A sampler fed every t in every round, with the loss values losses_per_t[t] (each a list cycled)."""
    sampler = ImportanceSampler(T, warmup=10, decay=decay)
    for r in range(rounds):
        t = torch.arange(T)
        values = torch.tensor([v[r % len(v)] for v in losses_per_t], dtype=torch.float32)
        sampler.update(t, values)
    return sampler


def test_importance_weighted_estimate_is_unbiased_for_the_sum_over_t_eq_importance_t():
    """E_{t~p}[L_t w_t] = (1/T) Σ_t L_t with the weights w_t = 1/(T p_t) that sample() returns, for a learned,
    far from uniform p: by Monte Carlo over 200,000 draws (within 4 standard errors)."""
    loss = torch.tensor([30.0, 8.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])  # spans two orders, like λ_t
    sampler = warmed_up([[v] for v in loss.tolist()])
    p = sampler.probabilities()
    assert p.max() / p.min() > 50  # really not uniform
    t, w = sampler.sample(200_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.double(), 1 / (T * p[t]), rtol=1e-6, atol=0)
    estimate = loss[t].double() * w.double()
    se = estimate.std() / math.sqrt(len(estimate))
    assert abs(estimate.mean() - loss.double().mean()) < 4 * se
    # and its variance is below the uniform estimate's, the point of the exercise
    assert estimate.var() < loss.double().var() * (T - 1) / T


def test_importance_probabilities_follow_the_root_mean_square_loss_eq_importance_t():
    """Losses alternating between a_t and 3a_t: p_t ∝ √E[L_t²] ∝ a_t, mixed with 1/T at weight 10⁻³."""
    a = [1.0, 2.0, 4.0, 0.5, 0.25, 3.0, 1.5, 0.75]
    pattern = [[v, 3 * v] for v in a]  # alternating values: EMA of L² ends between a² and 9a², same ratio for all t
    sampler = warmed_up(pattern, rounds=400, decay=0.9)
    p = sampler.probabilities().double()
    a_t = torch.tensor(a, dtype=torch.float64)
    torch.testing.assert_close(p, 0.999 * a_t / a_t.sum() + 0.001 / T, rtol=1e-9, atol=0)
    rms = sampler.second_moment.sqrt()
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-12, atol=0)
    ratio = torch.tensor(a, dtype=torch.float64) / a[0]
    torch.testing.assert_close(rms / rms[0], ratio, rtol=1e-6, atol=0)  # the scale cancels
    # the second moment itself: an EMA of {a², 9a²} that ends after a 9a² sample, in steady state
    d = 0.9
    steady_after_high = (0.1 * 9 + 0.1 * d * 1) / (1 - d**2)
    torch.testing.assert_close(sampler.second_moment[0], torch.tensor(steady_after_high, dtype=torch.float64),
                               rtol=1e-6, atol=0)


def test_sampler_is_uniform_until_every_t_has_its_warmup():
    sampler = ImportanceSampler(T, warmup=3)
    for _ in range(3):
        assert torch.allclose(sampler.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))
        sampler.update(torch.arange(T - 1), torch.arange(1.0, T))  # t = T - 1 never seen
    assert torch.allclose(sampler.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))
    for _ in range(3):
        sampler.update(torch.tensor([T - 1]), torch.tensor([5.0]))
    assert not torch.allclose(sampler.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))


def test_duplicate_timesteps_in_a_batch_count_as_their_mean_square():
    sampler = ImportanceSampler(2, warmup=1)
    sampler.update(torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 2.0]))
    torch.testing.assert_close(sampler.second_moment, torch.tensor([5.0, 4.0], dtype=torch.float64))
    assert sampler.seen.tolist() == [2, 1]


@pytest.mark.parametrize("kwargs", [dict(T=0), dict(T=5, warmup=-1), dict(T=5, decay=1.0), dict(T=5, uniform_mix=0.0)])
def test_bad_sampler_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ImportanceSampler(**kwargs)


def test_update_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        ImportanceSampler(4).update(torch.tensor([0, 1]), torch.tensor([1.0]))
