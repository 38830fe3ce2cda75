"""Tests of ddpm_utils.targets: ε, x_0 and v describe one x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε.

Book Eqs. (x0-from-eps) (Ho et al. Eq. 15) and (v-definition) (Salimans & Ho 2022). The
reference a_t = √ᾱ_t, s_t = √(1-ᾱ_t) come from a Python-loop ᾱ over hand-written betas.
"""

import math
import typing

import pytest
import torch

from ddpm_utils import (
    CONVERTERS,
    TARGETS,
    MixtureOracle,
    ddim_sample,
    ddpm_sample,
    eps_to_x0,
    l_simple,
    q_sample,
    schedule_from_betas,
    split_prediction,
    training_target,
    v_to_eps,
    v_to_x0,
    x0_eps_to_v,
    x0_to_eps,
)
from ddpm_utils.data import mixture_1d
from ddpm_utils.targets import Converter, Target
from reference import loop_alpha_bars

T = 1000
BETAS = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]


ABAR = torch.tensor(loop_alpha_bars(BETAS), dtype=torch.float64)


@pytest.fixture(scope="module")
def schedule():
    return schedule_from_betas(BETAS)


def a_s(t, ndim):
    """(√ᾱ_t, √(1-ᾱ_t)) in float64, shaped (B, 1, …, 1)."""
    shape = (-1,) + (1,) * (ndim - 1)
    return ABAR[t].sqrt().reshape(shape), (1 - ABAR[t]).sqrt().reshape(shape)


def draw(shape, seed, t_low=0, t_high=T, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype)
    t = torch.randint(t_low, t_high, (shape[0],), generator=g)
    a, s = a_s(t, len(shape))
    xt = (a * x0.double() + s * eps.double()).to(dtype)
    return x0, eps, t, xt


def test_eps_x0_round_trip_float32_where_well_conditioned_eq_x0_from_eps_ho_eq15(schedule):
    """x̂_0 = (x_t - √(1-ᾱ_t) ε)/√ᾱ_t and back. Conditioned where both √ᾱ_t and √(1-ᾱ_t)
    are not small (the divisions amplify rounding by 1/√ᾱ_t and 1/√(1-ᾱ_t)): t in [50, 600)."""
    x0, eps, t, xt = draw((256, 3, 4), seed=0, t_low=50, t_high=600)
    torch.testing.assert_close(eps_to_x0(schedule, xt, t, eps), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0_to_eps(schedule, xt, t, x0), eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0_to_eps(schedule, xt, t, eps_to_x0(schedule, xt, t, eps)), eps, rtol=1e-5, atol=1e-5)


def test_eps_x0_round_trip_float64_at_every_t_eq_x0_from_eps(schedule):
    """In float64 the converters invert each other at every t, even where ᾱ_t ≈ 0 or ≈ 1."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(T, generator=g, dtype=torch.float64), torch.randn(T, generator=g, dtype=torch.float64)
    t = torch.arange(T)
    a, s = a_s(t, 1)
    xt = a * x0 + s * eps
    torch.testing.assert_close(eps_to_x0(schedule, xt, t, x0_to_eps(schedule, xt, t, x0)), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0_to_eps(schedule, xt, t, eps_to_x0(schedule, xt, t, eps)), eps, rtol=1e-9, atol=1e-9)


def test_v_round_trip_at_every_t_eq_v_definition(schedule):
    """v = √ᾱ ε - √(1-ᾱ) x_0 is a rotation of (x_0, ε); inverting it is well conditioned at all t."""
    x0, eps, t, xt = draw((4000, 2), seed=2)
    v = x0_eps_to_v(schedule, x0, t, eps)
    torch.testing.assert_close(v_to_x0(schedule, xt, t, v), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v_to_eps(schedule, xt, t, v), eps, rtol=1e-5, atol=1e-5)


def test_v_definition_recovers_x0_from_sampled_xt_eq_v_definition(schedule):
    """Book Eq. (v-definition): with v = √ᾱ ε - √(1-ᾱ) x_0 and x_t = √ᾱ x_0 + √(1-ᾱ) ε,
    √ᾱ x_t - √(1-ᾱ) v = x_0 and √(1-ᾱ) x_t + √ᾱ v = ε (reference ᾱ from the Python loop).
    As a rotation it also preserves the norm: x_t² + v² = x_0² + ε²."""
    x0, eps, t, _ = draw((512, 3), seed=3)
    xt = q_sample(schedule, x0, t, noise=eps)
    v = x0_eps_to_v(schedule, x0, t, eps).double()
    a, s = a_s(t, 2)
    torch.testing.assert_close(a * xt.double() - s * v, x0.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s * xt.double() + a * v, eps.double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xt.double() ** 2 + v**2, x0.double() ** 2 + eps.double() ** 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
@pytest.mark.parametrize("shape", [(64,), (64, 2), (64, 3, 4, 4)])
def test_split_prediction_returns_a_consistent_pair_for_every_target(schedule, target, shape):
    """Whatever the target, the pair satisfies √ᾱ x̂_0 + √(1-ᾱ) ε̂ = x_t, and the component
    the model predicted is passed through (v: x0_eps_to_v of the pair gives back the output)."""
    _, _, t, xt = draw(shape, seed=4, t_low=50, t_high=600)
    output = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    pred = split_prediction(schedule, xt, t, output, target)
    a, s = a_s(t, len(shape))
    torch.testing.assert_close(a * pred.x0.double() + s * pred.eps.double(), xt.double(), rtol=1e-5, atol=1e-5)
    given = {"eps": pred.eps, "x0": pred.x0, "v": x0_eps_to_v(schedule, pred.x0, t, pred.eps)}[target]
    torch.testing.assert_close(given, output, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_clip_x0_keeps_x0_in_range_and_the_pair_consistent(schedule, target):
    """With clip_x0, x̂_0 ∈ [-1, 1] and ε̂ is recomputed so that √ᾱ x̂_0 + √(1-ᾱ) ε̂ = x_t."""
    _, _, t, xt = draw((256, 4), seed=6, t_low=50, t_high=600)
    output = 3 * torch.randn(256, 4, generator=torch.Generator().manual_seed(7))
    raw = split_prediction(schedule, xt, t, output, target)
    pred = split_prediction(schedule, xt, t, output, target, clip_x0=True)
    assert (raw.x0.abs() > 1).any()  # the clip has work to do
    assert pred.x0.min() >= -1 and pred.x0.max() <= 1
    inside = raw.x0.abs() <= 1
    assert torch.equal(pred.x0[inside], raw.x0[inside])
    a, s = a_s(t, 2)
    torch.testing.assert_close(a * pred.x0.double() + s * pred.eps.double(), xt.double(), rtol=1e-5, atol=1e-5)


def test_training_target_is_eps_x0_or_v(schedule):
    x0, eps, t, _ = draw((16, 2), seed=8)
    assert torch.equal(training_target(schedule, x0, t, eps, "eps"), eps)
    assert torch.equal(training_target(schedule, x0, t, eps, "x0"), x0)
    a, s = a_s(t, 2)
    torch.testing.assert_close(training_target(schedule, x0, t, eps, "v").double(), a * eps.double() - s * x0.double())


def test_unknown_target_raises(schedule):
    x = torch.zeros(2, 3)
    t = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="unknown prediction target 'score'"):
        split_prediction(schedule, x, t, x, "score")
    with pytest.raises(ValueError, match="unknown prediction target"):
        training_target(schedule, x, t, x, "epsilon")


def test_model_output_of_wrong_shape_raises(schedule):
    with pytest.raises(ValueError, match="returned shape"):
        split_prediction(schedule, torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3, 1))


# --- the table of converters ------------------------------------------------------------------


def test_the_table_lists_exactly_the_targets_of_the_type():
    assert TARGETS == typing.get_args(Target) == tuple(CONVERTERS)


@pytest.mark.parametrize("target", TARGETS)
def test_each_entry_of_the_table_inverts_itself_at_the_sampled_xt(schedule, target):
    """from_x0_eps makes the training target of (x_0, ε); to_x0_eps, given x_t = √ᾱ x_0 + √(1-ᾱ) ε
    (reference ᾱ), reads (x_0, ε) back from it. A new target's two functions must pass this."""
    x0, eps, t, xt = draw((512, 3), seed=9, t_low=50, t_high=600)
    converter = CONVERTERS[target]
    x0_back, eps_back = converter.to_x0_eps(schedule, xt, t, converter.from_x0_eps(schedule, x0, t, eps))
    torch.testing.assert_close(x0_back, x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_back, eps, rtol=1e-5, atol=1e-5)


def test_a_target_added_to_the_table_works_in_training_and_sampling(schedule, monkeypatch):
    """One entry adds a target: here the score ∇ log q(x_t) = -ε / √(1-ᾱ_t) (Tweedie). The loss, the
    exact oracle and both samplers take it, and sample what the ε target samples."""
    def score_to_x0_eps(schedule, xt, t, score):
        eps = -schedule.sqrt_one_minus_alpha_bars[t].reshape(-1, *[1] * (xt.ndim - 1)) * score
        return eps_to_x0(schedule, xt, t, eps), eps

    def score_of(schedule, x0, t, eps):
        return -eps / schedule.sqrt_one_minus_alpha_bars[t].reshape(-1, *[1] * (eps.ndim - 1))

    monkeypatch.setitem(CONVERTERS, "score", Converter(score_to_x0_eps, score_of))
    x0, eps, t, xt = draw((64, 2), seed=10, t_low=50, t_high=600)
    s = schedule.sqrt_one_minus_alpha_bars[t].double()[:, None]
    torch.testing.assert_close(training_target(schedule, x0, t, eps, "score").double(), -eps.double() / s)
    perfect = lambda x, tt: training_target(schedule, x0, tt, eps, "score")  # noqa: E731
    assert l_simple(perfect, schedule, x0, t, eps, target="score").abs().max() < 1e-10
    mixture = mixture_1d()
    xT = torch.randn(256, generator=torch.Generator().manual_seed(11))
    for sample in (lambda m, target: ddim_sample(m, schedule, xT, steps=20, target=target),
                   lambda m, target: ddpm_sample(m, schedule, xT, steps=20, target=target,
                                                 generator=torch.Generator().manual_seed(12))):
        by_eps = sample(MixtureOracle(mixture, schedule), "eps")
        by_score = sample(MixtureOracle(mixture, schedule, target="score"), "score")
        torch.testing.assert_close(by_score, by_eps, rtol=1e-4, atol=1e-4)
