"""plan_run: representative inputs give plans whose configurations the package accepts as they are,
the budget arithmetic is the stated one, and inputs the recipe cannot plan for are refused early."""

import math

import pytest
import torch

import ddpm_utils as du
from ddpm_utils.models import UNet
from ddpm_utils.recipe import MIN_STEPS, RunPlan, measure_images_per_s, plan_run
from ddpm_utils.samplers import SAMPLERS
from ddpm_utils.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_short_mnist_plan_uses_the_books_short_run_settings():
    plan = plan_run(4000, (1, 28, 28), 1.0, images_per_s=60.0)
    steps = int(1.0 * 3600 * 60 // 64)
    assert plan.train.steps == steps and plan.train.batch_size == 64 and plan.train.lr == 1e-3
    assert plan.train.ema_decay == 0.995 and plan.train.target == "v" and plan.train.p_uncond == 0.0
    assert plan.schedule_kind == "linear" and plan.sampler == "dpmpp_2m" and plan.sampling_steps == 20
    assert plan.guidance_w is None and plan.unet.num_classes is None and plan.unet.image_size == 28
    assert plan.epochs == pytest.approx(steps * 64 / 4000)
    assert "classifier Fréchet" in plan.evaluation.metric and plan.evaluation.seeds >= 3
    assert "fewer than the 1,500 steps" not in str(plan) and plan.throughput_source == "given"
    assert list(plan.table().index) == [c.decision for c in plan.choices]


def test_the_long_run_settings_start_at_20000_steps_of_batch_128():
    short = plan_run(4000, (1, 28, 28), 10.0, images_per_s=60.0)  # 16,875 steps of 128: still a short run
    long = plan_run(4000, (1, 28, 28), 12.0, images_per_s=60.0)  # 20,250 steps of 128
    assert (short.train.batch_size, short.train.lr) == (64, 1e-3)
    assert (long.train.batch_size, long.train.lr, long.train.steps) == (128, 2e-4, 20_250)


def test_a_budget_below_the_shortest_measured_run_is_planned_with_a_warning():
    plan = plan_run(4000, (1, 28, 28), 0.25, images_per_s=60.0)  # 843 steps
    assert MIN_STEPS <= plan.train.steps < 1500 and "fewer than the 1,500 steps" in str(plan)


def test_a_stretched_budget_buys_exactly_the_shortest_run_and_says_so():
    # 0.1 h at 60 images/s buys 337 steps of batch 64; 500 steps of batch 64 need 500 * 64 / 60 s
    plan = plan_run(4000, (1, 28, 28), 0.1, images_per_s=60.0, stretch_budget=True)
    assert plan.train.steps == MIN_STEPS and plan.train.batch_size == 64
    assert plan.budget_hours == pytest.approx(MIN_STEPS * 64 / 60.0 / 3600)
    assert plan.choices[0].decision == "budget" and "337 steps" in plan.choices[0].reason
    assert "8.9 minutes instead of 6.0" in str(plan)
    unstretched = plan_run(4000, (1, 28, 28), 0.25, images_per_s=60.0, stretch_budget=True)
    assert unstretched.budget_hours == 0.25 and all(c.decision != "budget" for c in unstretched.choices)


def test_a_long_conditional_rgb_plan_uses_ho_et_al_settings_and_guidance():
    plan = plan_run(50_000, (3, 32, 32), 10.0, conditional=True, num_classes=10, images_per_s=2000.0)
    assert plan.train.batch_size == 128 and plan.train.lr == 2e-4 and plan.train.ema_decay == 0.999
    assert plan.train.steps == int(10 * 3600 * 2000 // 128) and plan.train.p_uncond == 0.1
    assert plan.unet.num_classes == 10 and plan.unet.in_channels == 3 and plan.guidance_w is not None
    assert plan.evaluation.metric.startswith("FID") and plan.evaluation.samples == 10_000
    options = plan.sampler_options(labels=torch.arange(4))
    assert options["w"] == plan.guidance_w and options["target"] == "v" and options["steps"] == 20


def test_a_64_pixel_plan_uses_the_cosine_schedule_and_a_deeper_unet():
    plan = plan_run(20_000, (3, 64, 64), 5.0, images_per_s=500.0)
    assert plan.schedule_kind == "cosine" and len(plan.unet.channel_mults) == 4
    assert plan.schedule().alpha_bars[-1] < 1e-6


@pytest.mark.parametrize("args, kwargs, match", [
    ((100, (1, 28, 28), 1.0), {}, "num_images must be an integer ≥ 256"),
    ((4000, (1, 28), 1.0), {}, "image_shape must be"),
    ((4000, (2, 28, 28), 1.0), {}, "1 or 3 channels"),
    ((4000, (1, 28, 32), 1.0), {}, "square images"),
    ((4000, (3, 128, 128), 1.0), {}, "latent diffusion"),
    ((4000, (1, 30, 30), 1.0), {}, "multiple of 4"),
    ((4000, (1, 36, 36), 1.0), {}, "multiple of 8"),
    ((4000, (1, 28, 28), 0.0), {}, "budget_hours"),
    ((4000, (1, 28, 28), math.nan), {}, "budget_hours"),
    ((4000, (1, 28, 28), 1.0), {"conditional": True}, "num_classes ≥ 2"),
    ((4000, (1, 28, 28), 1.0), {"num_classes": 10}, "pass conditional=True"),
    ((4000, (1, 28, 28), 1.0), {"images_per_s": -5.0}, "images_per_s must be a positive"),
    ((4000, (1, 28, 28), 0.1), {"images_per_s": 60.0}, "buys 337 steps.*0.148 h on this device"),
])
def test_inputs_the_recipe_cannot_plan_for_are_refused(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_run(*args, **kwargs)


def test_the_plans_configurations_train_and_sample_as_they_are():
    plan = plan_run(4000, (1, 28, 28), 1.0, conditional=True, num_classes=10, images_per_s=60.0)
    torch.manual_seed(0)
    model = UNet(plan.unet)
    schedule = plan.schedule()
    images = torch.rand(16, 1, 28, 28) * 2 - 1
    from dataclasses import replace

    result = train(model, schedule, images, replace(plan.train, steps=2, batch_size=4, check_every=1),
                   labels=torch.arange(16) % 10, progress=False)
    assert torch.isfinite(result.losses).all()
    labels = torch.tensor([3, 7])
    x = SAMPLERS[plan.sampler](result.ema_model, schedule, (2, 1, 28, 28), **plan.sampler_options(labels=labels))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()


def test_without_a_throughput_the_plan_measures_the_planned_network(monkeypatch):
    import ddpm_utils.recipe as recipe

    seen = {}

    def fake(unet, batch_size, device, steps=3):
        seen.update(unet=unet, batch=batch_size, device=device)
        return 120.0

    monkeypatch.setattr(recipe, "measure_images_per_s", fake)
    plan = plan_run(4000, (1, 28, 28), 1.0, device="cpu")
    assert seen["unet"] == plan.unet and seen["batch"] == 64 and seen["device"] == torch.device("cpu")
    assert plan.images_per_s == 120.0 and plan.throughput_source.startswith("measured on CPU")


def test_measure_images_per_s_times_real_training_steps():
    tiny = du.models.UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False)
    rate = measure_images_per_s(tiny, 4, "cpu", steps=2)
    assert math.isfinite(rate) and rate > 0


@pytest.mark.parametrize("bf16_instructions, expected", [(True, 4 / 1.0), (False, 4 / 3.0)])
def test_measure_images_per_s_reports_the_precision_auto_would_choose(monkeypatch, bf16_instructions, expected):
    # a clock under the test's control: a bf16 step "takes" 1 s, a float32 step 3 s
    import ddpm_utils.precision as precision
    import ddpm_utils.training as training

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: bf16_instructions)
    precision.forget_choices()  # no choice left by an earlier test: this run's trial decides
    clock = {"now": 0.0}
    real_autocast = training.autocast

    def timed_autocast(device, p):
        clock["now"] += 1.0 if p == "bf16" else 3.0
        return real_autocast(device, p)

    monkeypatch.setattr(training, "autocast", timed_autocast)
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock["now"])
    tiny = du.models.UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False)
    assert measure_images_per_s(tiny, 4, "cpu", steps=2) == pytest.approx(expected)
    precision.forget_choices()
