"""Tests for the first lesson (a DDPM in one dimension): the linear schedule with a fixed end point,
the concatenating MLP, labelled mixture draws, the exact class-conditional ε*, classifier-free
guidance, the true reverse kernel and the mode shares. Each equation is checked by another route:
Monte Carlo, regression, torch.distributions with autograd, or Bayes' rule on a grid.
"""

import math

import pytest
import torch

import ddpm_utils as du
from ddpm_utils.data import mixture_1d, mixture_2d
from ddpm_utils.metrics import misplaced_mass, mode_masses
from ddpm_utils.models import ConcatMLP, ConcatMLPConfig, count_parameters
from ddpm_utils.schedules import linear_betas

F64 = dict(dtype=torch.float64)


def lesson_schedule(T=40):
    return du.schedule_from_betas(du.linear_betas_reaching(T), kind="linear")


# ---------------------------------------------------------------------------------------------
# The schedule: linear β, the same end point ᾱ_T for every T
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 3, 5, 10, 40, 1000])
def test_linear_betas_reaching_are_linear_with_ratio_200_and_reach_alpha_bar_T(T):
    betas = du.linear_betas_reaching(T, alpha_bar_T=1e-3)
    assert torch.prod(1 - betas).item() == pytest.approx(1e-3, rel=1e-9)  # a plain product, not the log-sum
    assert ((betas > 0) & (betas < 1)).all()
    if T > 1:
        assert betas[-1] / betas[0] == pytest.approx(200.0, rel=1e-9)
        assert torch.diff(betas, n=2).abs().max() < 1e-12 if T > 2 else True
    else:
        assert betas.item() == pytest.approx(1 - 1e-3)


def test_linear_betas_reaching_defaults_to_hos_end_point():
    assert du.linear_betas_reaching(1000)[-1].item() == pytest.approx(0.02, rel=2e-3)
    assert torch.prod(1 - linear_betas(1000)).item() == pytest.approx(4.04e-5, rel=2e-3)


def test_linear_betas_reaching_hos_end_point_is_hos_schedule():
    ho = linear_betas(1000)  # 1e-4 … 0.02
    again = du.linear_betas_reaching(1000, alpha_bar_T=torch.prod(1 - ho).item())
    assert torch.allclose(again, ho, rtol=1e-8, atol=0)


@pytest.mark.parametrize("kwargs", [dict(T=0), dict(T=2.0), dict(T=5, alpha_bar_T=0.0), dict(T=5, alpha_bar_T=1.0),
                                    dict(T=5, ratio=0.5)])
def test_linear_betas_reaching_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        du.linear_betas_reaching(**kwargs)


# ---------------------------------------------------------------------------------------------
# The network: [x_t, sinusoidal(t), one-hot(y)] → MLP
# ---------------------------------------------------------------------------------------------


def test_concat_mlp_has_the_parameters_of_its_layers():
    # (1 + 16 time features) · 24 + 24, then 24 · 24 + 24, then 24 + 1
    assert count_parameters(ConcatMLP()) == 17 * 24 + 24 + 24 * 24 + 24 + 24 + 1 == 1057
    # a class-conditional model adds one input per label, the null label included
    assert count_parameters(ConcatMLP(ConcatMLPConfig(num_classes=2))) == 1057 + 3 * 24


@pytest.mark.parametrize("shape", [(7,), (7, 1)])
def test_concat_mlp_returns_the_shape_of_xt_and_depends_on_t(shape):
    torch.manual_seed(0)
    model = ConcatMLP()
    x = torch.randn(shape)
    out = model(x, torch.zeros(7, dtype=torch.long))
    assert out.shape == shape
    assert not torch.allclose(out, model(x, torch.full((7,), 20)))


def test_concat_mlp_2d_and_its_input_is_the_concatenation():
    torch.manual_seed(0)
    model = ConcatMLP(ConcatMLPConfig(data_dim=2, time_features=8, num_classes=3))
    x, t, y = torch.randn(5, 2), torch.arange(5), torch.tensor([0, 1, 2, 3, 1])
    features = torch.cat([x, du.models.sinusoidal_embedding(t, 8, 100.0), torch.nn.functional.one_hot(y, 4).float()], 1)
    assert torch.allclose(model(x, t, y), model.net(features))


def test_concat_mlp_null_label_is_the_default_and_labels_change_the_output():
    torch.manual_seed(0)
    model = ConcatMLP(ConcatMLPConfig(num_classes=2))
    x, t = torch.randn(6), torch.arange(6)
    assert torch.equal(model(x, t), model(x, t, torch.full((6,), 2)))
    assert not torch.allclose(model(x, t, torch.zeros(6, dtype=torch.long)), model(x, t, torch.ones(6, dtype=torch.long)))


@pytest.mark.parametrize("y, match", [(torch.tensor([0, 3]), r"\[0, 2\]"), (torch.tensor([-1, 0]), r"\[0, 2\]"),
                                      (torch.tensor([0.0, 1.0]), "integer"), (torch.tensor([0, 1, 1]), r"shape \(2,\)")])
def test_concat_mlp_rejects_bad_labels(y, match):
    model = ConcatMLP(ConcatMLPConfig(num_classes=2))
    with pytest.raises(ValueError, match=match):
        model(torch.randn(2), torch.arange(2), y)


def test_concat_mlp_rejects_labels_when_unconditional_and_bad_inputs():
    model = ConcatMLP()
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2), torch.arange(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="xt must have shape"):
        model(torch.randn(2, 2), torch.arange(2))
    with pytest.raises(ValueError, match="integer"):
        model(torch.randn(2), torch.rand(2))
    for bad in (dict(hidden=0), dict(time_features=1), dict(max_period=1.0), dict(num_classes=0)):
        with pytest.raises(ValueError):
            ConcatMLPConfig(**bad)


# ---------------------------------------------------------------------------------------------
# Labelled data and the exact class-conditional ε*
# ---------------------------------------------------------------------------------------------


def test_sample_labelled_draws_each_component_with_its_weight_and_its_own_law():
    mixture = mixture_1d()
    x, k = mixture.sample_labelled(200_000, torch.Generator().manual_seed(0))
    share = (k == 0).double().mean().item()
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 200_000)
    for c in (0, 1):
        part = x[k == c, 0].double()
        assert part.mean().item() == pytest.approx(mixture.means[c, 0].item(), abs=0.005)
        assert part.std().item() == pytest.approx(mixture.stds[c, 0].item(), rel=0.01)
    with pytest.raises(ValueError):
        mixture.component(2)
    with pytest.raises(ValueError):
        mixture.sample_labelled(0)


@pytest.mark.parametrize("t", [0, 10, 25, 39])
def test_conditional_eps_star_is_the_regression_of_eps_on_xt_within_a_component(t):
    # Within one Gaussian component E[ε | x_t] is linear in x_t: fit it by least squares on Monte Carlo draws
    mixture, schedule = mixture_1d(), lesson_schedule()
    oracle = du.LabelledMixtureOracle(mixture, schedule)
    gen = torch.Generator().manual_seed(t)
    for c in (0, 1):
        x0, _ = mixture.component(c).sample_labelled(400_000, gen)
        eps = torch.randn(x0.shape[0], generator=gen)
        a, s = schedule.sqrt_alpha_bars[t].double(), schedule.sqrt_one_minus_alpha_bars[t].double()
        xt = a * x0[:, 0].double() + s * eps.double()
        design = torch.stack([xt, torch.ones_like(xt)], 1)
        coef = torch.linalg.lstsq(design, eps.double()[:, None]).solution[:, 0]
        probe = xt.mean() + 2 * xt.std() * torch.linspace(-1, 1, 7, **F64)  # within the component's x_t
        fitted = coef[0] * probe + coef[1]
        got = oracle(probe.float(), torch.full((7,), t), torch.full((7,), c)).double()
        assert torch.allclose(got, fitted, atol=0.01), (c, got, fitted)


def test_unconditional_eps_star_is_the_responsibility_weighted_mix_of_the_conditional_ones():
    # E[ε | x_t] = Σ_k p(k | x_t) E[ε | x_t, k], with p(k | x_t) from torch.distributions by Bayes' rule
    mixture, schedule = mixture_1d(), lesson_schedule()
    oracle = du.LabelledMixtureOracle(mixture, schedule)
    x, t = torch.linspace(-2, 2, 41), torch.full((41,), 12)
    a, s2 = schedule.sqrt_alpha_bars[12].double(), schedule.one_minus_alpha_bars[12].double()
    normals = torch.distributions.Normal(a * mixture.means[:, 0].double(),
                                         (a**2 * mixture.stds[:, 0].double() ** 2 + s2).sqrt())
    joint = normals.log_prob(x.double()[:, None]) + mixture.weights.double().log()  # (41, K)
    resp = torch.softmax(joint, 1)
    parts = torch.stack([oracle(x, t, torch.full((41,), k)).double() for k in (0, 1)], 1)
    mixed = (resp * parts).sum(1)
    assert torch.allclose(oracle(x, t, torch.full((41,), 2)).double(), mixed, atol=1e-5)
    assert torch.equal(oracle(x, t), oracle(x, t, torch.full((41,), 2)))
    assert torch.allclose(oracle(x, t), du.MixtureOracle(mixture, schedule)(x, t))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        oracle(x, t, torch.full((41,), 3))


# ---------------------------------------------------------------------------------------------
# Classifier-free guidance — lesson Eq. (first-guidance)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("t", [0, 15, 39])
def test_guided_exact_eps_is_the_noise_predictor_of_the_tilted_density_eq_first_guidance(w, t):
    # ε̃ = -√(1-ᾱ_t) ∇_x [(1+w) log q_t(x | c) - w log q_t(x)], the score by autograd through torch.distributions
    mixture, schedule = mixture_1d(), lesson_schedule()
    guided = du.ClassifierFreeGuidance(du.LabelledMixtureOracle(mixture, schedule), 0, w)
    a, s2 = schedule.sqrt_alpha_bars[t].double(), schedule.one_minus_alpha_bars[t].double()
    stds = (a**2 * mixture.stds[:, 0].double() ** 2 + s2).sqrt()
    q_t = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(mixture.weights.double()),
                                                torch.distributions.Normal(a * mixture.means[:, 0].double(), stds))
    q_t_given_0 = torch.distributions.Normal(a * mixture.means[0, 0].double(), stds[0])
    x = torch.linspace(-2, 2, 21, **F64).requires_grad_(True)
    tilted = ((1 + w) * q_t_given_0.log_prob(x) - w * q_t.log_prob(x)).sum()
    (score,) = torch.autograd.grad(tilted, x)
    expected = -s2.sqrt() * score
    got = guided(x.detach().float(), torch.full((21,), t)).double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize("w", [1.0, 3.0, 7.0])
def test_tilted_density_is_the_conditional_times_the_classifier_to_the_w_eq_first_tilt(w):
    # log[q(x | c)^{1+w} q(x)^{-w}] - log[q(x | c) q(c | x)^w] = -w log q(c) at every x, with q(c | x) by Bayes' rule
    mixture = mixture_1d()
    x = torch.linspace(-3, 3, 61, **F64)
    normals = torch.distributions.Normal(mixture.means[:, 0].double(), mixture.stds[:, 0].double())
    log_joint = normals.log_prob(x[:, None]) + mixture.weights.double().log()  # (61, 2): log q(x, c)
    log_q = torch.logsumexp(log_joint, 1)
    for c in (0, 1):
        log_given_c = normals.log_prob(x[:, None])[:, c]  # log q(x | c)
        log_classifier = log_joint[:, c] - log_q  # log q(c | x)
        difference = ((1 + w) * log_given_c - w * log_q) - (log_given_c + w * log_classifier)
        assert torch.allclose(difference, torch.full_like(x, -w * math.log(mixture.weights[c].item())), atol=1e-9)


def test_guidance_combines_one_conditional_and_one_null_call_eq_first_guidance():
    torch.manual_seed(0)
    model = ConcatMLP(ConcatMLPConfig(num_classes=2))
    x, t, y = torch.randn(8), torch.randint(0, 40, (8,)), torch.tensor([0, 1] * 4)
    cond, null = model(x, t, y), model(x, t, torch.full((8,), 2))
    assert torch.allclose(du.ClassifierFreeGuidance(model, y, 3.0)(x, t), 4 * cond - 3 * null, atol=1e-6)
    assert torch.allclose(du.ClassifierFreeGuidance(model, 1, 0.0)(x, t), model(x, t, torch.ones(8, dtype=torch.long)))


def test_guiding_v_outputs_then_converting_is_guiding_eps():
    # the guided combination has weights 1 + w and -w, summing to one, so it commutes with the affine v → ε map
    torch.manual_seed(0)
    schedule = lesson_schedule()
    model = ConcatMLP(ConcatMLPConfig(num_classes=2))
    x, t = torch.randn(8), torch.randint(0, 40, (8,))
    guided_then_converted = du.v_to_eps(schedule, x, t, du.ClassifierFreeGuidance(model, 0, 2.5)(x, t))
    eps_cond = du.v_to_eps(schedule, x, t, model(x, t, torch.zeros(8, dtype=torch.long)))
    eps_null = du.v_to_eps(schedule, x, t, model(x, t, torch.full((8,), 2)))
    assert torch.allclose(guided_then_converted, 3.5 * eps_cond - 2.5 * eps_null, atol=1e-5)


def test_guidance_rejects_bad_scales_labels_and_unconditional_models():
    conditional = ConcatMLP(ConcatMLPConfig(num_classes=2))
    for w in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="guidance weight w"):
            du.ClassifierFreeGuidance(conditional, 0, w)
    with pytest.raises(ValueError, match="null label"):
        du.ClassifierFreeGuidance(conditional, 2, 1.0)
    with pytest.raises(ValueError, match="class-conditional"):
        du.ClassifierFreeGuidance(ConcatMLP(), 0, 1.0)
    with pytest.raises(ValueError, match="guidance labels for a batch"):
        du.ClassifierFreeGuidance(conditional, torch.tensor([0, 1, 0]), 1.0)(torch.randn(2), torch.arange(2))


def test_the_lessons_chain_with_the_exact_eps_reproduces_the_mixture_eq_first_reverse():
    # 40 steps, σ_t² = β_t, no noise on the last step: the samples have the mixture's mode shares, mean and spread
    mixture, schedule = mixture_1d(), lesson_schedule()
    x = du.ddpm_sample(du.MixtureOracle(mixture, schedule), schedule, (40_000,), variance="beta",
                       generator=torch.Generator().manual_seed(0))
    data = mixture.sample(40_000, torch.Generator().manual_seed(1))[:, 0]
    assert misplaced_mass(x, mixture) < 0.02
    assert x.mean().item() == pytest.approx(data.mean().item(), abs=0.02)
    assert x.std().item() == pytest.approx(data.std().item(), rel=0.02)
    assert du.metrics.wasserstein_1d(x, data) < 0.04


def test_guided_sampling_with_the_exact_eps_hits_the_requested_mode():
    mixture, schedule = mixture_1d(), lesson_schedule()
    oracle = du.LabelledMixtureOracle(mixture, schedule)
    for c in (0, 1):
        x = du.ddpm_sample(du.ClassifierFreeGuidance(oracle, c, 0.0), schedule, (4000,), variance="beta",
                           generator=torch.Generator().manual_seed(c))
        assert mode_masses(x, mixture)[c] > 0.95


# ---------------------------------------------------------------------------------------------
# The reverse step in terms of v — lesson Eq. (first-reverse-v)
# ---------------------------------------------------------------------------------------------


def test_reverse_mean_in_terms_of_v_eq_first_reverse_v():
    # μ_θ = √α_t x_t - √ᾱ_{t-1} β_t / √(1-ᾱ_t) · v̂, against the package's route through x̂_0 and μ̃_t
    torch.manual_seed(0)
    schedule = lesson_schedule()
    model = ConcatMLP()
    x, t = torch.randn(64), torch.randint(0, 40, (64,))
    with torch.no_grad():
        v_hat = model(x, t).double()
        b, ab_prev, ab = (schedule.betas.double()[t], schedule.alpha_bars_prev.double()[t],
                          schedule.alpha_bars.double()[t])
        by_formula = (1 - b).sqrt() * x.double() - ab_prev.sqrt() * b / (1 - ab).sqrt() * v_hat
        package = du.p_mean_variance(model, schedule, x, t, target="v").mean.double()
    assert torch.allclose(package, by_formula, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The true reverse kernel and the mode shares
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T, t", [(40, 39), (40, 0), (3, 1), (3, 2), (1, 0)])
def test_true_reverse_kernel_is_a_density_whose_mean_is_the_exact_reverse_mean(T, t):
    # Bayes on a grid against the closed-form μ̃_t(x_t, E[x_0 | x_t]) of the exact ε*
    mixture, schedule = mixture_1d(), lesson_schedule(T)
    oracle = du.MixtureOracle(mixture, schedule)
    grid = torch.linspace(-6, 6, 24001, **F64)
    dx = (grid[1] - grid[0]).item()
    for xt in (-0.7, 0.3, 1.4):
        kernel = oracle.reverse_kernel(xt, t, grid)
        assert (kernel.sum() * dx).item() == pytest.approx(1.0, abs=1e-5)
        mean = du.p_mean_variance(oracle, schedule, torch.tensor([xt]), torch.tensor([t])).mean
        assert ((kernel * grid).sum() * dx).item() == pytest.approx(mean.item(), abs=1e-4)
    with pytest.raises(ValueError):
        oracle.reverse_kernel(0.0, T, grid)


def test_reverse_kernel_of_a_single_large_step_is_bimodal_and_of_a_small_one_unimodal():
    mixture = mixture_1d()
    grid = torch.linspace(-3, 3, 6001, **F64)
    for T, t, modes in ((1, 0, 2), (40, 0, 1)):
        kernel = du.MixtureOracle(mixture, lesson_schedule(T)).reverse_kernel(0.3, t, grid)
        peaks = ((kernel[1:-1] > kernel[:-2]) & (kernel[1:-1] > kernel[2:])).sum().item()
        assert peaks == modes, (T, peaks)


@pytest.mark.parametrize("make, width", [(mixture_1d, 3.0), (mixture_1d, 1.0), (mixture_2d, 2.0)])
def test_mode_masses_of_the_mixture_itself_are_its_weights_times_the_window_probability(make, width):
    mixture = make()
    x = mixture.sample(400_000, torch.Generator().manual_seed(0))
    inside = (1 - 2 * torch.special.ndtr(torch.tensor(-width, **F64))) ** mixture.dim  # P(|z| ≤ width)^D
    expected = torch.cat([mixture.weights.double() * inside, 1 - inside.reshape(1)])
    assert torch.allclose(mode_masses(x, mixture, width=width), expected, atol=0.004)


def test_mode_masses_counts_far_points_as_neither_and_rejects_bad_input():
    mixture = mixture_1d()
    masses = mode_masses(torch.tensor([-1.0, 1.0, 1.1, 0.0, 5.0]), mixture)
    assert masses.tolist() == pytest.approx([0.2, 0.4, 0.4])
    with pytest.raises(ValueError):
        mode_masses(torch.zeros(3, 2), mixture)
    with pytest.raises(ValueError):
        mode_masses(torch.zeros(3), mixture, width=0.0)


def test_misplaced_mass_is_the_total_variation_between_mode_shares():
    mixture = mixture_1d()
    inside = 1 - 2 * torch.special.ndtr(torch.tensor(-3.0, **F64)).item()  # P(|z| ≤ 3)
    assert misplaced_mass(mixture.sample(400_000, torch.Generator().manual_seed(0)), mixture) < 0.003
    # every sample at +1: the mode at -1 (0.3 · inside) and the tails (1 - inside) must be filled from it
    assert misplaced_mass(torch.ones(100), mixture) == pytest.approx(1 - 0.7 * inside, abs=1e-6)
    assert misplaced_mass(torch.full((100,), 5.0), mixture) == pytest.approx(inside, abs=1e-6)
    half = torch.cat([torch.full((50,), -1.0), torch.ones(50)])  # 0.5 / 0.5 / 0 against 0.3 / 0.7 / 0.003
    assert misplaced_mass(half, mixture) == pytest.approx(0.5 * (abs(0.5 - 0.3 * inside) + abs(0.5 - 0.7 * inside)
                                                                 + (1 - inside)), abs=1e-6)
