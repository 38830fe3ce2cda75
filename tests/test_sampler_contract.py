"""The contract every sampler in ddpm_utils.samplers.SAMPLERS keeps, checked for each of them.

One signature: ``sampler(model, schedule, shape_or_xT, *, steps, spacing, target, clip_x0,
generator, callback, progress, <its own options>)``, everything after ``shape_or_xT``
keyword-only; any data rank; the same draws from the same generator, whether x_T is passed or
drawn; one ``SamplerStep`` per visited step, before the step; a clear ValueError for bad input;
and any callable model, guidance included. A new sampler listed in SAMPLERS is checked by every
test here; its own equations are tested in a file of their own (as in tests/test_samplers.py).
"""

import inspect
import math

import pytest
import torch

import ddpm_utils as du
from ddpm_utils.data import mixture_1d
from ddpm_utils.samplers import SAMPLERS, SamplerStep
from reference import loop_alpha_bars

COMMON = {"steps", "spacing", "target", "clip_x0", "generator", "callback", "progress", "labels", "w", "guidance_scale",
          "precision"}
DEFAULTS = {"spacing": None, "target": "eps", "clip_x0": False, "generator": None, "callback": None, "progress": False,
            "labels": None, "w": None, "guidance_scale": None, "precision": "fp32"}
T = 60  # ≥ 50, DDIM's default number of steps
SCHEDULE = du.make_schedule("linear", T=T, beta_start=1e-4, beta_end=0.1)


class TinyNet(torch.nn.Module):
    """ε̂ = √(1-ᾱ_t) x_t + a fixed random function of (x_t, t), for data of any shape with D values
    per example: the ε* of N(0, I) data plus a perturbation, so that samples stay of order 1."""

    def __init__(self, schedule, D, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(D, 8, generator=g) / math.sqrt(D))
        self.emb = torch.nn.Parameter(torch.randn(schedule.T, 8, generator=g))
        self.w2 = torch.nn.Parameter(torch.randn(8, D, generator=g) / 4)
        self.register_buffer("s", schedule.sqrt_one_minus_alpha_bars.clone())

    def forward(self, x, t):
        flat = x.reshape(x.shape[0], -1)  # (B, D)
        eps = self.s[t, None] * flat + 0.3 * torch.tanh(flat @ self.w1 + self.emb[t]) @ self.w2
        return eps.reshape(x.shape)


def net(shape=(6, 2)):
    return TinyNet(SCHEDULE, math.prod(shape[1:]))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def never_called(xt, t):
    """A model for bad arguments: they must be refused before the first step."""
    raise AssertionError("the model ran before the arguments were checked")


@pytest.fixture(params=list(SAMPLERS), ids=list(SAMPLERS))
def sampler(request):
    return SAMPLERS[request.param]


# --- the signature ------------------------------------------------------------------------------


def test_every_sampler_is_listed_and_exported():
    assert set(SAMPLERS) >= {"ddpm", "ddim"}
    for name, fn in SAMPLERS.items():
        assert getattr(du, fn.__name__) is fn, f"{name}: {fn.__name__} is not importable from ddpm_utils"


def test_one_signature_with_everything_after_shape_or_xT_keyword_only(sampler):
    params = inspect.signature(sampler).parameters
    first = [p for p in params.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert [p.name for p in first] == ["model", "schedule", "shape_or_xT"]
    assert all(p.default is inspect.Parameter.empty for p in first)
    assert COMMON <= set(params), f"missing {COMMON - set(params)}"
    for name, default in DEFAULTS.items():
        assert params[name].default == default, name


def test_a_positional_option_raises_type_error(sampler):
    with pytest.raises(TypeError):
        sampler(net(), SCHEDULE, (4, 2), 5)  # steps given by position
    with pytest.raises(TypeError):
        sampler(net(), SCHEDULE, (4, 2), 5, None, "eps")


# --- shapes, determinism, x_T ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (5, 2), (5, 3, 4, 4)], ids=["B", "B,D", "B,C,H,W"])
@pytest.mark.parametrize("steps", ["default", 7])
def test_every_data_rank_gives_samples_of_its_shape(sampler, shape, steps):
    kw = {} if steps == "default" else {"steps": steps}
    out = sampler(net(shape), SCHEDULE, shape, generator=gen(0), **kw)
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_the_same_generator_seed_gives_the_same_samples(sampler):
    a = sampler(net(), SCHEDULE, (16, 2), steps=10, generator=gen(1))
    b = sampler(net(), SCHEDULE, (16, 2), steps=10, generator=gen(1))
    c = sampler(net(), SCHEDULE, (16, 2), steps=10, generator=gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_passing_x_T_is_the_same_as_drawing_it_from_the_generator(sampler):
    """Given a shape the sampler first draws x_T ~ N(0, I) from the generator; passing that x_T and
    the generator in the state it is then in gives the same samples, and x_T is left untouched."""
    from_shape = sampler(net(), SCHEDULE, (16, 2), steps=10, generator=gen(3))
    g = gen(3)
    xT = torch.randn(16, 2, generator=g)
    kept, state = xT.clone(), g.get_state()
    from_tensor = sampler(net(), SCHEDULE, xT, steps=10, generator=g)
    again = sampler(net(), SCHEDULE, xT, steps=10, generator=torch.Generator().set_state(state))
    assert torch.equal(from_shape, from_tensor) and torch.equal(from_tensor, again) and torch.equal(xT, kept)


def test_progress_bar_changes_nothing(sampler):
    quiet = sampler(net(), SCHEDULE, (8, 2), steps=5, generator=gen(4))
    shown = sampler(net(), SCHEDULE, (8, 2), steps=5, generator=gen(4), progress=True)
    assert torch.equal(quiet, shown)


# --- the callback -----------------------------------------------------------------------------------


# The spacing each sampler gives an int number of steps when none is named. A sampler missing here
# fails the callback test below: add it, with the spacing its docstring promises.
DEFAULT_SPACING = {"ddpm": "linspace", "ddim": "linspace", "dpmpp_2m": "trailing"}
# T = 60, n = 5, worked by hand: linspace round(59 j / 4), trailing round(12 j) - 1
FIVE_STEPS = {"linspace": [59, 44, 30, 15, 0], "trailing": [59, 47, 35, 23, 11]}


@pytest.mark.parametrize(
    "steps, spacing, visited",
    [(None, None, list(range(T - 1, -1, -1))), (5, None, "default"), (5, "linspace", FIVE_STEPS["linspace"]),
     (5, "trailing", FIVE_STEPS["trailing"]), ([0, 3, 12], None, [12, 3, 0])],
    ids=["all", "5", "5-linspace", "5-trailing", "list"],
)
def test_callback_gets_one_sampler_step_per_visited_step_before_it_is_taken(sampler, steps, spacing, visited):
    """Code indices decreasing, as Python ints; x_t, x̂_0 and ε̂ shaped like the batch; the first
    x_t is x_T itself (called before the step); and x̂_0, ε̂ describe that x_t:
    x_t = √ᾱ_t x̂_0 + √(1-ᾱ_t) ε̂, with ᾱ_t from a Python loop over the betas. An int number of
    steps with no spacing named is spaced by the sampler's own default (DEFAULT_SPACING)."""
    if visited == "default":
        name = next(k for k, fn in SAMPLERS.items() if fn is sampler)
        visited = FIVE_STEPS[DEFAULT_SPACING[name]]
    shape = (4, 3, 2, 2)
    calls = []
    xT = torch.randn(shape, generator=gen(5))
    kw = {} if spacing is None else {"spacing": spacing}
    out = sampler(net(shape), SCHEDULE, xT, steps=steps, generator=gen(6), callback=lambda *a: calls.append(a), **kw)
    assert all(len(a) == 1 and isinstance(a[0], SamplerStep) for a in calls), "one SamplerStep per call"
    records = [a[0] for a in calls]
    assert [r.t for r in records] == visited and all(type(r.t) is int for r in records)
    assert all(r.xt.shape == r.x0.shape == r.eps.shape == shape for r in records) and out.shape == shape
    assert torch.equal(records[0].xt, xT)
    alpha_bars = loop_alpha_bars(SCHEDULE.betas.tolist())
    for r in records:
        a, s = math.sqrt(alpha_bars[r.t]), math.sqrt(1 - alpha_bars[r.t])
        torch.testing.assert_close(a * r.x0.double() + s * r.eps.double(), r.xt.double(), rtol=1e-4, atol=1e-4)


def test_a_callback_does_not_change_the_samples(sampler):
    plain = sampler(net(), SCHEDULE, (8, 2), steps=6, generator=gen(7))
    watched = sampler(net(), SCHEDULE, (8, 2), steps=6, generator=gen(7), callback=lambda step: None)
    assert torch.equal(plain, watched)


# --- bad input: a ValueError that says what was expected -------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, r"steps must lie in \[1, T=60\]"),
        ({"steps": T + 1}, r"steps must lie in \[1, T=60\]"),
        ({"steps": [3, 3, 10]}, "strictly increasing"),
        ({"steps": [0, T]}, r"strictly increasing code indices in \[0, 59\]"),
        ({"steps": 2.5}, "steps must be None, an int or a sequence"),
        ({"steps": 5, "spacing": "uniform"}, "unknown spacing 'uniform'"),
        ({"steps": [0, 5], "spacing": "linspace"}, "spacing applies only when steps is an int"),
        ({"target": "score"}, "unknown prediction target 'score'"),
    ],
    ids=["steps-0", "steps-T+1", "steps-repeated", "steps-past-T", "steps-float", "spacing-unknown",
         "spacing-with-list", "target"],
)
def test_bad_arguments_raise_a_value_error_before_the_model_runs(sampler, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampler(never_called, SCHEDULE, (4, 2), **kwargs)


def test_model_or_x_T_on_another_device_raises(sampler):
    """No silent device moves (STYLE §10); `meta` plays the other device on a CPU-only machine."""
    with pytest.raises(ValueError, match="x_T is on meta but the schedule is on cpu"):
        sampler(net(), SCHEDULE, torch.zeros(4, 2, device="meta"))
    with pytest.raises(ValueError, match="the model is on meta but the schedule is on cpu"):
        sampler(net().to("meta"), SCHEDULE, (4, 2))


def test_ddim_rejects_a_negative_or_undefined_eta():
    for eta in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="eta must be >= 0"):
            du.ddim_sample(never_called, SCHEDULE, (4, 2), eta=eta)


def test_ddpm_rejects_an_unknown_variance_before_sampling():
    with pytest.raises(ValueError, match="unknown reverse variance 'learned'"):
        du.ddpm_sample(never_called, SCHEDULE, (4, 2), variance="learned")


# --- any callable model: classifier-free guidance ----------------------------------------------------


def test_every_sampler_samples_with_classifier_free_guidance(sampler):
    """ClassifierFreeGuidance(model, labels, w) is a model like any other. With w = 0 it is the
    conditional model: the same samples as the exact oracle of that component alone. With w = 2
    towards the left mode (weight 0.3) all samples land on the left."""
    schedule = du.make_schedule("linear", T=100, beta_start=1e-4, beta_end=0.1)
    mixture = mixture_1d()
    labelled = du.LabelledMixtureOracle(mixture, schedule)
    xT = torch.randn(200, generator=gen(8))
    plain = sampler(du.ClassifierFreeGuidance(labelled, 0, 0.0), schedule, xT, steps=50, generator=gen(9))
    alone = sampler(du.MixtureOracle(mixture.component(0), schedule), schedule, xT, steps=50, generator=gen(9))
    torch.testing.assert_close(plain, alone, rtol=1e-5, atol=1e-5)
    labels = torch.zeros(200, dtype=torch.long)  # a label per example works as well as one int
    guided = sampler(du.ClassifierFreeGuidance(labelled, labels, 2.0), schedule, xT, steps=50, generator=gen(9))
    assert guided.shape == (200,) and torch.isfinite(guided).all() and (guided < 0).all()
