"""From a data set and a compute budget to a training and sampling plan (book page "A recipe for your own data").

:func:`plan_run` makes every choice of the recipe page in order — schedule, prediction target,
network size, training steps and optimiser, sampler and step count, guidance, evaluation — and
returns them as a :class:`RunPlan`: configurations that :func:`~ddpm_utils.training.train` and the
samplers take as they are, each with the reason for it and the place in the book that measured it.
It plans only what the book measured or can cite: images of at most 64×64 pixels with one or three
channels, and enough budget for a run that learns something.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .models.unet import UNetConfig
from .schedules import Schedule, make_schedule
from .training import TrainConfig

MIN_IMAGES = 256  # fewer images than this, and a diffusion model memorises them
MIN_STEPS = 500  # the shortest run planned; below it no run of this book gave recognisable samples
MEASURED_STEPS = 1500  # the shortest MNIST training the book measured (chapter 4: Fréchet 72 against 39 at 4,000)
MAX_SIDE = 64  # larger images: use a latent or a cascaded model (the recipe page, "Where to go next")


@dataclass(frozen=True)
class Choice:
    """One decision of the plan: what was chosen, why, and where the book shows it."""

    decision: str  # e.g. "prediction target"
    value: str  # what the plan chose, in words
    reason: str  # why, with the measurement behind it
    source: str  # the book page (and section) that measured or derived it


@dataclass(frozen=True)
class EvalPlan:
    """How to judge the samples (the recipe page, "Evaluation protocol")."""

    metric: str  # what distance to compute
    samples: int  # samples per evaluation, and as many reference images
    seeds: int  # sampling seeds (fresh x_T) per setting; report the mean and the spread
    floor: str  # how to get the floor: two sets of real images at the same n


@dataclass(frozen=True)
class RunPlan:
    """A complete plan: pass ``unet`` to ``UNet``, ``train`` to ``train``, ``sampler_options()`` to the sampler."""

    num_images: int
    image_shape: tuple[int, int, int]  # (C, H, W)
    budget_hours: float
    images_per_s: float  # training throughput the step count was computed from
    throughput_source: str  # "measured on …" or "given"
    schedule_kind: str  # "linear" or "cosine", T = 1000
    zero_terminal_snr: bool
    unet: UNetConfig
    train: TrainConfig
    sampler: str  # a key of ddpm_utils.samplers.SAMPLERS
    sampling_steps: int
    best_quality_sampler: str  # the slower sampler to use when quality matters more than time
    guidance_w: float | None  # Ho & Salimans' w (guidance_scale = 1 + w); None for an unconditional model
    evaluation: EvalPlan
    choices: tuple[Choice, ...]

    def schedule(self) -> Schedule:
        """The planned noise schedule (T = 1000)."""
        return make_schedule(self.schedule_kind, 1000, zero_terminal_snr=self.zero_terminal_snr)

    def sampler_options(self, labels=None) -> dict:
        """Keyword arguments for ``SAMPLERS[plan.sampler](model, schedule, shape, **options)``."""
        options = {"steps": self.sampling_steps, "target": self.train.target, "clip_x0": True}
        if labels is not None:
            options.update(labels=labels, w=self.guidance_w or 0.0)
        return options

    @property
    def epochs(self) -> float:
        """How many times training sees each image on average."""
        return self.train.steps * self.train.batch_size / self.num_images

    def table(self):
        """The choices as a pandas DataFrame (decision, choice, why, where)."""
        import pandas as pd

        return pd.DataFrame([c.__dict__ for c in self.choices]).set_index("decision")

    def __str__(self) -> str:
        c, h, w = self.image_shape
        lines = [f"Plan for {self.num_images:,} images of {c}×{h}×{w}, {self.budget_hours:g} h of compute "
                 f"({self.images_per_s:,.0f} images/s, {self.throughput_source}):"]
        width = max(len(choice.decision) for choice in self.choices)
        for choice in self.choices:
            lines.append(f"  {choice.decision:<{width}} : {choice.value}")
            lines.append(f"  {'':<{width}}   {choice.reason} [{choice.source}]")
        return "\n".join(lines)


def _check(num_images, image_shape, budget_hours, conditional, num_classes):
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < MIN_IMAGES:
        raise ValueError(f"num_images must be an integer ≥ {MIN_IMAGES}: with fewer images a diffusion model "
                         f"memorises its training set; got {num_images!r}")
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
            or not all(isinstance(n, int) and n > 0 for n in image_shape)):
        raise ValueError(f"image_shape must be (C, H, W) with positive integers, got {image_shape!r}")
    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"the recipe plans for images with 1 or 3 channels, got C = {c}")
    if h != w:
        raise ValueError(f"the recipe plans for square images (the package's UNet takes H = W), got {h}×{w}; "
                         "crop or pad them first")
    if h > MAX_SIDE:
        raise ValueError(f"{h}×{w} pixels is beyond what this book measured (at most {MAX_SIDE}×{MAX_SIDE}): train a "
                         "latent diffusion model on an autoencoder's latents instead (recipe page, 'Where to go next')")
    if h < 8 or h % 4:
        raise ValueError(f"the side must be a multiple of 4 and at least 8 (the UNet halves it twice), got {h}")
    if h > 32 and h % 8:
        raise ValueError(f"above 32 pixels the side must be a multiple of 8 (the planned UNet halves it three times), "
                         f"got {h}")
    if not (isinstance(budget_hours, (int, float)) and math.isfinite(budget_hours) and budget_hours > 0):
        raise ValueError(f"budget_hours must be a positive number of hours, got {budget_hours!r}")
    if conditional and (num_classes is None or num_classes < 2):
        raise ValueError("a conditional plan needs num_classes ≥ 2 (the labels the model is conditioned on)")
    if not conditional and num_classes is not None:
        raise ValueError("num_classes was given for an unconditional plan: pass conditional=True")


def _network(image_shape, num_classes) -> UNetConfig:
    c, side, _ = image_shape
    if side <= 32:  # the sizes of the book's MNIST runs (28×28) and its 32×32 benchmark model
        return UNetConfig(image_size=side, in_channels=c, base_channels=32, channel_mults=(1, 2, 2),
                          num_res_blocks=2, attention=True, num_classes=num_classes)
    return UNetConfig(image_size=side, in_channels=c, base_channels=64, channel_mults=(1, 2, 2, 2),
                      num_res_blocks=2, attention=True, num_classes=num_classes)


def measure_images_per_s(unet: UNetConfig, batch_size: int, device: torch.device | str | None = None,
                         steps: int = 3) -> float:
    """Training images per second of ``UNet(unet)`` at ``batch_size`` on ``device``, in the precision that
    ``precision="auto"`` trains in: one short :func:`~ddpm_utils.training.train` run with ``"auto"`` on
    random images (its trial of the candidate precisions, one more step, then ``steps`` timed steps) and
    the rate of its last ``steps`` steps. A later ``"auto"`` run of the same network and batch in this
    Python session reuses the precision this run chose, without a trial of its own."""
    from .models import UNet
    from .precision import candidates, trial_order
    from .training import train

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.rand(batch_size, unet.in_channels, unet.image_size, unet.image_size, device=device) * 2 - 1
    labels = torch.zeros(batch_size, dtype=torch.long, device=device) if unet.num_classes else None
    options = candidates(device)
    trial = len(trial_order(options, TrainConfig().auto_trial_steps)) if len(options) > 1 else 0
    total = trial + 1 + steps  # with a choice already made in this session there is no trial: these steps just train
    torch.manual_seed(0)
    config = TrainConfig(steps=total, batch_size=batch_size, check_every=1, ema_decay=0.0, precision="auto")
    result = train(UNet(unet).to(device), make_schedule("linear").to(device), images, config, labels=labels,
                   progress=False)
    marks = dict(result.timeline)
    return batch_size * steps / (marks[total] - marks[total - steps])


def plan_run(
    num_images: int,
    image_shape: tuple[int, int, int],
    budget_hours: float,
    conditional: bool = False,
    num_classes: int | None = None,
    images_per_s: float | None = None,
    device: torch.device | str | None = None,
    stretch_budget: bool = False,
) -> RunPlan:
    """Plan a training and sampling run for ``num_images`` images of ``image_shape`` = (C, H, W).

    Args:
        num_images: training images (at least 256).
        image_shape: (C, H, W) with C ∈ {1, 3}, H = W, a multiple of 4 from 8 to 64.
        budget_hours: wall-clock hours of training on the device that will train.
        conditional: plan a class-conditional model with classifier-free guidance.
        num_classes: the number of classes, for a conditional plan.
        images_per_s: the device's training throughput for the planned network; measured on
            ``device`` with a few training steps when not given.
        device: where to measure the throughput (default: CUDA if present, else the CPU).
        stretch_budget: when the budget buys fewer than 500 steps on this device, plan the shortest
            budget that buys them (and say so in the plan's choices) instead of refusing.

    Returns:
        A :class:`RunPlan`; ``print(plan)`` shows each choice with its reason and its source.

    Raises:
        ValueError: for inputs the recipe cannot plan for (too few images, non-square or too large
            images, no budget, a conditional plan without classes) or, unless ``stretch_budget``, a
            budget that buys fewer than 500 training steps.
    """
    _check(num_images, image_shape, budget_hours, conditional, num_classes)
    c, side, _ = image_shape
    unet = _network(image_shape, num_classes if conditional else None)
    if images_per_s is None:
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        from .run import describe_device

        images_per_s = measure_images_per_s(unet, 64, device)
        source = f"measured on {describe_device(device)}"
    else:
        if not (isinstance(images_per_s, (int, float)) and math.isfinite(images_per_s) and images_per_s > 0):
            raise ValueError(f"images_per_s must be a positive number, got {images_per_s!r}")
        source = "given"
    images_seen = budget_hours * 3600 * images_per_s
    long_run = images_seen / 128 >= 20_000
    batch = 128 if long_run else 64
    steps = int(images_seen // batch)
    stretched = None
    if steps < MIN_STEPS:
        shortest = MIN_STEPS * batch / images_per_s / 3600
        if not stretch_budget:
            raise ValueError(f"{budget_hours:g} h at {images_per_s:,.0f} images/s buys {steps} steps of batch {batch}; "
                             f"the recipe needs at least {MIN_STEPS}, {shortest:.3g} h on this device. Raise the "
                             "budget, use a faster device, or pass stretch_budget=True")
        stretched = Choice("budget", f"{60 * shortest:.1f} minutes instead of {60 * budget_hours:.1f}",
                           f"{60 * budget_hours:.1f} minutes at {images_per_s:,.0f} images/s buy {steps} steps of "
                           f"batch {batch}; the recipe plans at least {MIN_STEPS} (stretch_budget=True)",
                           "A recipe for your own data")
        budget_hours, steps = shortest, MIN_STEPS
    train = TrainConfig(steps=steps, batch_size=batch, lr=2e-4 if long_run else 1e-3,
                        warmup_steps=1000 if long_run else 100, ema_decay=0.999 if steps >= 10_000 else 0.995,
                        target="v", p_uncond=0.1 if conditional else 0.0)
    schedule_kind = "linear" if side <= 32 else "cosine"
    choices = [] if stretched is None else [stretched]
    choices += [
        Choice("noise schedule",
               f"{schedule_kind}, T = 1000" + ("" if side <= 32 else " (β clipped at 0.999)"),
               ("every MNIST measurement of the book uses Ho et al.'s linear schedule, and its one linear-against-"
                "cosine run on 28×28 digits did not separate the two" if side <= 32 else
                "at 64×64 the linear schedule leaves the last quarter of its steps at almost no signal; "
                "Nichol & Dhariwal's cosine schedule fixes that, and its large top step is harmless with v"),
               "chapter 1, Noise schedules; notebook 1"),
        Choice("prediction target", "v, without zero terminal SNR",
               "v errs at neither end of the chain (chapter 5: on MNIST, ε's x̂₀ error at t = T was far larger than v's, "
               "x₀'s error at t = 1 larger than v's), samples as well as ε on the toy, and keeps working if the "
               "schedule is rescaled to zero terminal SNR",
               "chapter 5, What the notebook measures"),
        Choice("network",
               f"UNet, base {unet.base_channels} channels, mults {unet.channel_mults}, "
               f"{unet.num_res_blocks} blocks per level, attention at the lowest resolution"
               + (f", {num_classes} classes + null label" if conditional else ""),
               "Ho et al.'s architecture at the sizes the book trains and benchmarks (a 4M UNet at 32×32); "
               "with little data or budget, halve base_channels",
               "How fast is it?; chapter 1's notebook"),
        Choice("training",
               f"{steps:,} steps of batch {batch} (≈ {steps * batch / num_images:.0f} epochs), AdamW lr "
               f"{train.lr:g}, warm-up {train.warmup_steps}, EMA {train.ema_decay}, gradient clip {train.grad_clip}",
               (f"the budget at {images_per_s:,.0f} images/s; " +
                ("Ho et al.'s lr and batch for long runs" if long_run else
                 "a short run: the book's MNIST settings (lr 1e-3, batch 64, EMA 0.995), which reached a Fréchet "
                 "distance near the real-data floor in 4,000 steps")
                + (f"; fewer than the {MEASURED_STEPS:,} steps of the shortest MNIST run measured, so expect "
                   "blurry samples" if steps < MEASURED_STEPS else "")
                + "; sample from the EMA weights (chapter 0: they sampled better than the raw weights over 3 seeds)"),
               "chapter 4's notebook (1,500 and 4,000 steps); chapter 0, notebook section 4"),
        Choice("sampler", "DPM-Solver++(2M), 20 steps, 'trailing' spacing, x̂₀ clipped",
               "a second-order solver of the probability-flow ODE: on MNIST it reached the network's own ODE "
               "solution by 10 to 20 evaluations; 'trailing' keeps its last step short",
               "chapter 4, What the notebook measures"),
        Choice("best-quality sampler", "DDPM, σ² = β̃, all 1000 steps",
               "when time allows: on the same MNIST network DDPM-1000 reached a lower Fréchet distance than every "
               "deterministic sampler, because fresh noise corrects the network's errors",
               "chapter 4, What the notebook measures; chapter 3"),
    ]
    guidance_w = None
    if conditional:
        guidance_w = 0.5
        choices.append(Choice("guidance", "p_uncond = 0.1 in training; w = 0.5 (guidance_scale = 1.5) to sample, "
                              "w = 1 where the class must be right",
                              "on MNIST a small weight removed the conditional network's leaks and gave the lowest "
                              "Fréchet distance to each class; w = 1 made the requested digit near certain; every "
                              "larger weight only cost variety",
                              "chapter 6, Which w for which goal"))
    if c == 1 and side <= 32:
        evaluation = EvalPlan("classifier Fréchet distance in the features of a small classifier of your classes "
                              "(ddpm_utils.metrics for MNIST digits)", 1000, 3,
                              "the same distance between two sets of real images at the same n")
    else:
        evaluation = EvalPlan("FID (Inception features, Heusel et al.) against held-out images", 10_000, 3,
                              "FID between two sets of real images at the same n")
    choices.append(Choice("evaluation",
                          f"{evaluation.metric}; {evaluation.samples:,} samples, {evaluation.seeds} sampling seeds, "
                          "beside its floor",
                          "a Fréchet distance is biased at small n and moves by several units between seeds: compare "
                          "only numbers at the same n, with the floor and the spread beside them",
                          "A recipe for your own data, Evaluation protocol"))
    return RunPlan(num_images, (c, side, side), float(budget_hours), float(images_per_s), source, schedule_kind, False,
                   unet, train, "dpmpp_2m", 20, "ddpm", guidance_w, evaluation, tuple(choices))
