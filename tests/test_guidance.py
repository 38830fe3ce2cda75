"""Chapter 6, classifier-free guidance: every displayed equation checked by another route.

Bayes' rule on scores and the implicit classifier by autograd through torch.distributions; the
two conventions (w and the guidance scale s = 1 + w) against separate network calls and inside
every sampler; classifier guidance with the exact classifier against classifier-free guidance with
the exact ε*; the tilted density on a grid; and the central negative result — the guided ε is not
the ε of the noised tilted distribution — by quadrature on a grid, on a Gaussian pair where both
sides are in closed form and on the chapter's three-class mixture.
"""

import math

import pytest
import torch

import ddpm_utils as du
from ddpm_utils.data import classes_1d
from ddpm_utils.distributions import GaussianMixture
from ddpm_utils.models import ConcatMLP, ConcatMLPConfig
from ddpm_utils.samplers import SAMPLERS
from ddpm_utils.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = dict(dtype=torch.float64)
SCHEDULE = du.make_schedule("linear")  # T = 1000


def noised(mixture, t):
    """q_t(x | k) for each class k as torch.distributions, and the log class weights (float64)."""
    a, s2 = SCHEDULE.sqrt_alpha_bars[t].double(), SCHEDULE.one_minus_alpha_bars[t].double()
    stds = (a**2 * mixture.stds[:, 0].double() ** 2 + s2).sqrt()
    return torch.distributions.Normal(a * mixture.means[:, 0].double(), stds), mixture.weights.double().log(), s2.sqrt()


def log_classifier(mixture, t, x):
    """log q_t(k | x) by Bayes' rule from torch.distributions: (n, K)."""
    normals, log_w, _ = noised(mixture, t)
    return torch.log_softmax(normals.log_prob(x[:, None]) + log_w, dim=1)


def grad(f, x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return g


# ---------------------------------------------------------------------------------------------
# Bayes' rule on scores and the implicit classifier — Eqs. (cfg-bayes), (cfg-implicit)
# ---------------------------------------------------------------------------------------------


def noisy_classifier_by_quadrature(mixture, t, x, n=8001):
    """log q_t(c | x) = log ∫ q(c | x_0) q(x_0 | x_t = x) dx_0 on a grid of x_0: the clean classifier averaged
    over the posterior of x_0 (the Markov chain c → x_0 → x_t), not Bayes' rule at level t. (len(x), K)."""
    a, s2 = SCHEDULE.sqrt_alpha_bars[t].double(), SCHEDULE.one_minus_alpha_bars[t].double()
    x0 = torch.linspace(-5, 5, n, **F64)
    clean = torch.distributions.Normal(mixture.means[:, 0].double(), mixture.stds[:, 0].double())
    log_joint0 = clean.log_prob(x0[:, None]) + mixture.weights.double().log()  # log q(x_0, k), (n, K)
    log_prior0 = torch.logsumexp(log_joint0, 1)  # log q(x_0)
    log_clean_classifier = log_joint0 - log_prior0[:, None]  # log q(k | x_0)
    log_post = torch.log_softmax(log_prior0[None, :] - 0.5 * (x[:, None] - a * x0[None, :]) ** 2 / s2, 1)
    return torch.logsumexp(log_post[:, :, None] + log_clean_classifier[None], 1)


@pytest.mark.parametrize("t", [50, 300, 700])
@pytest.mark.parametrize("c", [0, 1, 2])
def test_conditional_score_is_unconditional_plus_classifier_gradient_eq_cfg_bayes(c, t):
    # ∇ log q_t(x | c) by autograd on the class's noised Gaussian, against ∇ log q_t(x) (autograd on the noised
    # mixture) plus ∇ log q_t(c | x), the noisy classifier built by quadrature from the clean one
    mixture = classes_1d()
    normals, log_w, _ = noised(mixture, t)
    marginal = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=log_w), normals)
    x = torch.linspace(-2.5, 2.5, 41, **F64)
    left = grad(lambda z: normals.log_prob(z[:, None])[:, c], x)
    right = grad(marginal.log_prob, x) + grad(lambda z: noisy_classifier_by_quadrature(mixture, t, z)[:, c], x)
    assert torch.allclose(left, right, atol=1e-6), (left - right).abs().max()
    # the quadrature classifier is Bayes' rule at level t, and it is far from flat here
    assert torch.allclose(noisy_classifier_by_quadrature(mixture, t, x), log_classifier(mixture, t, x), atol=1e-6)
    assert (left - grad(marginal.log_prob, x)).abs().max() > 1e-2


@pytest.mark.parametrize("t", [50, 300, 700])
@pytest.mark.parametrize("c", [0, 1, 2])
def test_exact_conditional_minus_unconditional_eps_is_the_scaled_classifier_gradient_eq_cfg_implicit(c, t):
    # the package's exact ε*(x, c) - ε*(x, ∅) (posterior means) against -√(1-ᾱ_t) ∇ log q_t(c | x) by autograd
    mixture = classes_1d()
    oracle = du.LabelledMixtureOracle(mixture, SCHEDULE)
    x = torch.linspace(-2.5, 2.5, 41, **F64)
    tt = torch.full((41,), t)
    difference = oracle(x, tt, torch.full((41,), c)) - oracle(x, tt, torch.full((41,), 3))
    _, _, s = noised(mixture, t)
    expected = -s * grad(lambda z: log_classifier(mixture, t, z)[:, c], x)
    assert torch.allclose(difference, expected, atol=1e-8)
    assert expected.abs().max() > 1e-3  # not trivially zero: the classes overlap at every t here


# ---------------------------------------------------------------------------------------------
# Classifier guidance with the exact classifier — Eq. (cfg-classifier)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("t", [100, 500])
def test_classifier_guidance_with_the_exact_classifier_is_classifier_free_guidance_eq_cfg_classifier(w, t):
    # ε̂(x) - γ s_t ∇ log q_t(c | x): the unconditional ε* with γ = 1 + w, or the conditional one with γ = w,
    # both equal to the classifier-free guided ε* with weight w
    mixture, c = classes_1d(), 2
    oracle = du.LabelledMixtureOracle(mixture, SCHEDULE)
    x = torch.linspace(-2.5, 2.5, 41, **F64)
    tt = torch.full((41,), t)
    _, _, s = noised(mixture, t)
    classifier_grad = grad(lambda z: log_classifier(mixture, t, z)[:, c], x)
    free = du.ClassifierFreeGuidance(oracle, c, w)(x, tt)
    from_unconditional = oracle(x, tt) - (1 + w) * s * classifier_grad
    from_conditional = oracle(x, tt, torch.full((41,), c)) - w * s * classifier_grad
    assert torch.allclose(free, from_unconditional, atol=1e-8)
    assert torch.allclose(free, from_conditional, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# The two conventions — Eqs. (cfg-w), (cfg-scale) — in the wrapper and in every sampler
# ---------------------------------------------------------------------------------------------


class Counting(torch.nn.Module):
    """A class-conditional network that records the batch size and labels of each call."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.net = ConcatMLP(ConcatMLPConfig(num_classes=num_classes))
        self.config = self.net.config
        self.calls = []

    def forward(self, xt, t, y=None):
        self.calls.append((xt.shape[0], None if y is None else y.clone()))
        return self.net(xt, t, y)


def test_guided_prediction_extrapolates_from_the_null_prediction_eq_cfg_w():
    torch.manual_seed(0)
    model = ConcatMLP(ConcatMLPConfig(num_classes=3))
    x, t, y = torch.randn(9), torch.randint(0, 1000, (9,)), torch.tensor([0, 1, 2] * 3)
    cond, null = model(x, t, y), model(x, t, torch.full((9,), 3))
    for w in (0.0, 0.5, 2.0, 7.0):
        assert torch.allclose(du.ClassifierFreeGuidance(model, y, w)(x, t), (1 + w) * cond - w * null, atol=1e-5)


def test_guidance_scale_is_one_plus_w_eq_cfg_scale():
    torch.manual_seed(0)
    model = ConcatMLP(ConcatMLPConfig(num_classes=3))
    x, t, y = torch.randn(9), torch.randint(0, 1000, (9,)), torch.tensor([2, 0, 1] * 3)
    cond, null = model(x, t, y), model(x, t, torch.full((9,), 3))
    for s in (1.0, 1.5, 3.0, 8.0):
        by_scale = du.ClassifierFreeGuidance(model, y, guidance_scale=s)
        assert by_scale.w == pytest.approx(s - 1) and by_scale.guidance_scale == pytest.approx(s)
        assert torch.allclose(by_scale(x, t), null + s * (cond - null), atol=1e-5)
        assert torch.allclose(by_scale(x, t), du.ClassifierFreeGuidance(model, y, s - 1)(x, t), atol=1e-6)
    assert du.guidance_weight(w=2.0) == 2.0 and du.guidance_weight(guidance_scale=3.0) == 2.0


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_guides_with_either_convention_in_one_batched_call_per_step(name):
    sampler, steps = SAMPLERS[name], 6
    torch.manual_seed(0)
    model = Counting()
    labels = torch.tensor([0, 1, 2, 2])
    xT = torch.randn(4, generator=torch.Generator().manual_seed(1))
    by_w = sampler(model, SCHEDULE, xT, steps=steps, labels=labels, w=2.0, generator=torch.Generator().manual_seed(2))
    assert len(model.calls) == steps
    for batch, y in model.calls:  # conditional half, then the null half: one call of 2B per step
        assert batch == 8 and torch.equal(y, torch.tensor([0, 1, 2, 2, 3, 3, 3, 3]))
    model.calls.clear()
    by_s = sampler(model, SCHEDULE, xT, steps=steps, labels=labels, guidance_scale=3.0,
                   generator=torch.Generator().manual_seed(2))
    wrapped = sampler(du.ClassifierFreeGuidance(model, labels, 2.0), SCHEDULE, xT, steps=steps,
                      generator=torch.Generator().manual_seed(2))
    assert torch.equal(by_w, by_s) and torch.equal(by_w, wrapped)
    model.calls.clear()
    sampler(model, SCHEDULE, xT, steps=steps, labels=labels, generator=torch.Generator().manual_seed(2))
    assert [b for b, _ in model.calls] == [4] * steps  # labels alone: the conditional model, one pass of B


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_refuse_unclear_guidance_before_the_model_runs(name):
    sampler = SAMPLERS[name]
    model = Counting()
    bad = [
        (dict(labels=0, w=1.0, guidance_scale=2.0), "exactly one of w"),
        (dict(w=1.0), "without labels"),
        (dict(guidance_scale=2.0), "without labels"),
        (dict(labels=0, guidance_scale=0.5), "guidance scale s = 1 \\+ w must be a finite number ≥ 1"),
        (dict(labels=0, w=-1.0), "guidance weight w must be a finite number ≥ 0"),
        (dict(labels=0, w=math.nan), "guidance weight"),
        (dict(labels=3, w=1.0), "null label 3"),
        (dict(labels=torch.tensor([0.0, 1.0]), w=1.0), "integer labels"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            sampler(model, SCHEDULE, (2,), steps=3, **kwargs)
    assert model.calls == []
    with pytest.raises(ValueError, match="class-conditional"):
        sampler(ConcatMLP(), SCHEDULE, (2,), steps=3, labels=0, w=1.0)


class Recording(torch.nn.Module):
    """A 1-D class-conditional network that records every (x_t, t, y) it is called with."""

    def __init__(self, num_classes):
        super().__init__()
        self.net = ConcatMLP(ConcatMLPConfig(num_classes=num_classes))
        self.config = self.net.config
        self.seen = []

    def forward(self, xt, t, y=None):
        self.seen.append((xt.detach().clone(), t.clone(), y.clone()))
        return self.net(xt, t, y)


def test_label_dropout_shows_the_null_label_p_uncond_of_the_time_eq_cfg_dropout():
    # training sees c' = ∅ with probability p_uncond in every class, and otherwise the label of the example itself:
    # the data are x_0 = 10 × label, so the label can be read back from x_t = a_t x_0 + s_t ε
    schedule = du.make_schedule("linear", T=50)
    torch.manual_seed(0)
    model = Recording(num_classes=4)
    labels = torch.arange(512) % 4
    config = TrainConfig(steps=60, batch_size=256, p_uncond=0.2, ema_decay=0.0, check_every=60)
    train(model, schedule, 10.0 * labels.double().float(), config, labels=labels, progress=False)
    xt = torch.cat([x for x, _, _ in model.seen])
    t = torch.cat([t for _, t, _ in model.seen])
    y = torch.cat([y for _, _, y in model.seen])
    assert len(y) == 60 * 256
    true = (xt / (10 * schedule.sqrt_alpha_bars[t])).round().long()  # ε would need 6 sd to cross half a class
    kept = y != 4
    assert torch.equal(y[kept], true[kept])
    for k in range(4):
        in_class = true == k
        share = (~kept[in_class]).double().mean().item()
        assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / in_class.sum().item()), (k, share)


# ---------------------------------------------------------------------------------------------
# What guidance aims at: the tilted density at each noise level — Eq. (cfg-tilt)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("t", [0, 250, 999])
def test_guided_exact_eps_is_the_eps_of_the_tilt_of_the_noised_densities_eq_cfg_tilt(w, t):
    # -√(1-ᾱ_t) ∇ log[q_t(x|c)^{1+w} q_t(x)^{-w}] by autograd, and the same density written as
    # q_t(x|c) q_t(c|x)^w / q(c)^w and as q_t(x) q_t(c|x)^{1+w} / q(c)^{1+w} on a grid
    mixture, c = classes_1d(), 1
    normals, log_w, s = noised(mixture, t)
    marginal = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=log_w), normals)
    x = torch.linspace(-2.5, 2.5, 41, **F64)

    def log_tilt(z):
        return (1 + w) * normals.log_prob(z[:, None])[:, c] - w * marginal.log_prob(z)

    expected = -s * grad(log_tilt, x)
    got = du.ClassifierFreeGuidance(du.LabelledMixtureOracle(mixture, SCHEDULE), c, w)(x, torch.full((41,), t))
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7)
    log_post = log_classifier(mixture, t, x)[:, c]
    as_classifier = normals.log_prob(x[:, None])[:, c] + w * (log_post - log_w[c])
    as_unconditional = marginal.log_prob(x) + (1 + w) * (log_post - log_w[c])
    assert torch.allclose(log_tilt(x), as_classifier, atol=1e-9)
    assert torch.allclose(log_tilt(x), as_unconditional, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# ...but not the ε of the noised tilted distribution — Eqs. (cfg-noised-tilt), (cfg-gauss)
# ---------------------------------------------------------------------------------------------


def eps_of_noised_density(log_p0, x, t, lo=-8.0, hi=8.0, n=64_001):
    """ε of q̃_t = ∫ q̃_0(x_0) N(x; a x_0, s²) dx_0 for an unnormalised log q̃_0, by quadrature on a grid.

    -s ∇ log q̃_t(x) = E[(x - a x_0)/s | x] under the posterior ∝ q̃_0(x_0) N(x; a x_0, s²).
    """
    a, s2 = SCHEDULE.sqrt_alpha_bars[t].double(), SCHEDULE.one_minus_alpha_bars[t].double()
    x0 = torch.linspace(lo, hi, n, **F64)
    log_joint = log_p0(x0)[None, :] - 0.5 * (x[:, None] - a * x0[None, :]) ** 2 / s2  # (len(x), n)
    weights = torch.softmax(log_joint, dim=1)
    return (weights * (x[:, None] - a * x0[None, :])).sum(1) / s2.sqrt()


class GaussianPair:
    """The exact predictor for p_0(x | c) = N(μ, σ²) and p_0(x) = N(0, τ²): label 0 and the null label 1."""

    num_classes = 1

    def __init__(self, mu, sigma, tau):
        one = torch.ones(1)
        self.cond = du.MixtureOracle(GaussianMixture(one, torch.tensor([[mu]]), torch.tensor([[sigma]])), SCHEDULE)
        self.null = du.MixtureOracle(GaussianMixture(one, torch.zeros(1, 1), torch.tensor([[tau]])), SCHEDULE)

    def __call__(self, xt, t, y):
        return torch.where(y == 0, self.cond(xt, t), self.null(xt, t))


def guided_precision(ab, w, sigma, tau):
    """Eq. (cfg-gauss), guided side: (1 + w)/(ᾱσ² + 1 - ᾱ) - w/(ᾱτ² + 1 - ᾱ)."""
    return (1 + w) / (ab * sigma**2 + 1 - ab) - w / (ab * tau**2 + 1 - ab)


def tilt_precision(ab, w, sigma, tau):
    """Eq. (cfg-gauss), noised-tilt side: 1/(ᾱ ṽ + 1 - ᾱ) with 1/ṽ = (1 + w)/σ² - w/τ²."""
    v = 1 / ((1 + w) / sigma**2 - w / tau**2)
    return 1 / (ab * v + 1 - ab)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("t", [100, 400, 700])
def test_eps_of_the_noised_tilted_mixture_by_quadrature_eq_cfg_noised_tilt(w, t):
    # the quadrature of Eq. (cfg-noised-tilt) at w = 0 is the exact conditional ε*; at w > 0 it is not the guided ε̃
    mixture, c = classes_1d(), 0
    normals0 = torch.distributions.Normal(mixture.means[:, 0].double(), mixture.stds[:, 0].double())
    log_marginal0 = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mixture.weights.double()), normals0).log_prob

    def log_tilt0(x0):
        return (1 + w) * normals0.log_prob(x0[:, None])[:, c] - w * log_marginal0(x0)

    x = torch.linspace(-2.0, 2.0, 21, **F64)
    by_quadrature = eps_of_noised_density(log_tilt0, x, t)
    guided = du.ClassifierFreeGuidance(du.LabelledMixtureOracle(mixture, SCHEDULE), c, w)(x, torch.full((21,), t))
    gap = (guided - by_quadrature).abs().max().item()
    if w == 0:
        assert gap < 1e-6
    else:
        assert gap > 0.05, gap


@pytest.mark.parametrize("w", [0.5, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("sigma, tau", [(0.5, 1.0), (0.2, 0.6), (0.3, 1.5)])
def test_guided_gaussian_is_narrower_than_the_noised_tilt_eq_cfg_gauss(w, sigma, tau):
    # guided side: the slope of the package's guided ε̃ in x is √(1-ᾱ) × precision; noised-tilt side: the
    # slope of the quadrature ε of Eq. (cfg-noised-tilt). Both against the closed forms, then the inequality.
    model = GaussianPair(0.8, sigma, tau)
    log_tilt0 = lambda x0: -0.5 * ((1 + w) * (x0 - 0.8) ** 2 / sigma**2 - w * x0**2 / tau**2)  # noqa: E731
    x = torch.tensor([-0.5, 0.5], **F64)
    gaps = []
    for t in (20, 100, 250, 400, 600, 850):
        ab = SCHEDULE.alpha_bars[t].double().item()
        s = math.sqrt(1 - ab)
        eps = du.ClassifierFreeGuidance(model, 0, w)(x, torch.full((2,), t))
        precision_guided = ((eps[1] - eps[0]) / (x[1] - x[0])).item() / s
        eps_tilt = eps_of_noised_density(log_tilt0, x, t, lo=-6.0, hi=6.0)
        precision_tilt = ((eps_tilt[1] - eps_tilt[0]) / (x[1] - x[0])).item() / s
        assert precision_guided == pytest.approx(guided_precision(ab, w, sigma, tau), rel=1e-5)
        assert precision_tilt == pytest.approx(tilt_precision(ab, w, sigma, tau), rel=1e-5)
        gaps.append(precision_guided - precision_tilt)
    assert min(gaps) > 0, gaps  # the guided density at level t is strictly narrower than the noised tilt
    assert guided_precision(1.0, w, sigma, tau) == pytest.approx(tilt_precision(1.0, w, sigma, tau))  # t = 0
    assert guided_precision(0.0, w, sigma, tau) == pytest.approx(tilt_precision(0.0, w, sigma, tau))  # pure noise


def test_the_first_order_gap_in_alpha_bar_matches_the_closed_form_eq_cfg_gap():
    # 1/P_guided - 1/P_tilt = -ᾱ w (1+w)(τ² - σ²)² / ((1+w)τ² - wσ²) + O(ᾱ²), from the chapter's expansion
    for w, sigma, tau in [(1.0, 0.5, 1.0), (3.0, 0.2, 0.6), (7.0, 0.3, 1.5)]:
        coefficient = w * (1 + w) * (tau**2 - sigma**2) ** 2 / ((1 + w) * tau**2 - w * sigma**2)
        remainders = []
        for ab in (1e-3, 1e-4, 1e-5):
            gap = 1 / guided_precision(ab, w, sigma, tau) - 1 / tilt_precision(ab, w, sigma, tau)
            remainders.append(abs(gap + ab * coefficient) / ab**2)
        assert max(remainders) < 1.1 * min(remainders), remainders  # what is left is c ᾱ² with a steady c: O(ᾱ²)
        assert remainders[-1] * 1e-5 < 1e-3 * coefficient  # so the first-order term is right to 0.1 % at ᾱ = 1e-5


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_guided_ddim_on_the_gaussian_pair_ends_at_the_geometric_variance_eq_cfg_ode(w):
    # the deterministic sampler with many steps solves the guided ODE: Var = σ^{2(1+w)} τ^{-2w} < ṽ
    sigma, tau = 0.5, 1.0
    model = GaussianPair(0.8, sigma, tau)
    xT = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    ode = du.ddim_sample(model, SCHEDULE, xT, steps=1000, labels=0, w=w)
    sde = du.ddpm_sample(model, SCHEDULE, xT, labels=0, w=w, generator=torch.Generator().manual_seed(1))
    v_tilt = 1 / ((1 + w) / sigma**2 - w / tau**2)
    v_ode = sigma ** (2 * (1 + w)) * tau ** (-2 * w)
    assert ode.var().item() == pytest.approx(v_ode, rel=0.05)
    assert v_ode < v_tilt and ode.var().item() < 0.9 * v_tilt
    assert sde.var().item() < 0.9 * v_tilt and abs(sde.var().item() / ode.var().item() - 1) > 0.3


def test_guidance_weight_accessors_and_the_unconditional_network_without_labels():
    model = ConcatMLP(ConcatMLPConfig(num_classes=2))
    assert du.guided(model) is model
    assert isinstance(du.guided(model, 1), du.ClassifierFreeGuidance) and du.guided(model, 1).w == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        du.guidance_weight()
