"""One training loop for every notebook: Ho et al. Algorithm 1 with AdamW, clipping and EMA.

Algorithm 1, per step: draw x_0 from the data, t uniformly, ε ~ N(0, I); take a gradient
step on ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖². Everything around it (AdamW, gradient
clipping, an exponential moving average of the weights, mixed precision) is
engineering that makes the same loss train faster and sample better.

Two options of chapter 2 change the objective itself: ``loss="vlb"`` trains on the terms of the
variational bound (Ho et al. Eq. 5) instead of L_simple, and ``t_sampling="importance"`` draws t
with p_t ∝ √E[L_t²] and reweights by 1/(T p_t) (Nichol & Dhariwal 2021, Sec. 3.3).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .losses import check_decoder_data, l_simple, vlb_terms
from .precision import cpu_has_native_bf16  # noqa: F401  (re-exported: training.cpu_has_native_bf16)
from .precision import (
    CHOICES,
    PrecisionChoice,
    autocast,
    candidates,
    trial_order,
    check_precision,
    choose,
    forget_choices,
    network_key,
    resolve,
    reused,
    unmeasured,
)
from .reverse import VARIANCES
from .schedules import Schedule, schedule_from_betas
from .targets import check_target, check_x0_recoverable
from .timesteps import ImportanceSampler

LOSSES = ("simple", "vlb")
T_SAMPLINGS = ("uniform", "importance")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`; the defaults suit the book's small models."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 128  # examples per step
    lr: float = 2e-4  # AdamW learning rate (Ho et al. use 2e-4 on CIFAR-10)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_steps: int = 0  # linear learning-rate warm-up from 0 (Ho et al.: 5000 steps)
    grad_clip: float = 1.0  # maximum global gradient norm (Ho et al.: 1.0)
    ema_decay: float = 0.999  # EMA decay of the weights; samples come from the EMA copy
    target: str = "eps"  # what the model predicts: "eps", "x0" or "v"
    loss: str = "simple"  # "simple": L_simple (Ho Eq. 14); "vlb": the bound's term at t, in bits/dim (Eq. 5)
    t_sampling: str = "uniform"  # "uniform" (Algorithm 1) or "importance" (p_t ∝ √E[L_t²], reweighted)
    variance: str = "beta_tilde"  # the reverse variance σ_t² in the "vlb" loss: "beta_tilde" or "beta"
    p_uncond: float = 0.0  # probability of replacing a class label by the null label (guidance)
    seed: int = 0  # seeds the batches, timesteps and noise drawn by the loop
    precision: str = "auto"  # "auto" (time the candidates on the first steps, keep the fastest), "fp32", "bf16", "fp16"
    auto_trial_steps: int = 3  # with "auto": timed steps per candidate, alternating, after a warm-up step each
    channels_last: bool = False  # store images and conv weights NHWC (helps convs on recent GPUs)
    compile: bool = False  # wrap the model in torch.compile (worth it on GPUs for long runs)
    check_every: int = 50  # steps between checks for a non-finite loss (and progress updates)
    record_loss_per_t: bool = False  # also accumulate the mean loss at each timestep

    def __post_init__(self):
        check_target(self.target)
        if self.loss not in LOSSES or self.t_sampling not in T_SAMPLINGS or self.variance not in VARIANCES:
            raise ValueError(
                f"loss must be one of {LOSSES}, t_sampling one of {T_SAMPLINGS}, variance one of {VARIANCES}; "
                f"got {self.loss!r}, {self.t_sampling!r}, {self.variance!r}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.check_every < 1:
            raise ValueError("steps, batch_size and check_every must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")
        if self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("lr and grad_clip must be positive")
        check_precision(self.precision)
        if self.auto_trial_steps < 1:
            raise ValueError(f"auto_trial_steps must be at least 1, got {self.auto_trial_steps}")


class EMA:
    """An exponential moving average of a model's weights: θ̄ ← θ̄ + (1 - d)(θ - θ̄).

    The decay ramps up as min(d, (1 + n) / (10 + n)) after n updates, so a short run is not
    dominated by the random initial weights. ``ema.model`` is a frozen copy in eval mode.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


class TrainResult(NamedTuple):
    model: nn.Module  # the trained model (train mode)
    ema_model: nn.Module  # the EMA copy, used for sampling
    losses: Tensor  # (steps,) the batch loss at each step, on the CPU
    loss_per_t: Tensor | None  # (T,) mean loss at each timestep, if recorded
    seconds: float  # wall time of the loop
    timeline: list[tuple[int, float]]  # (steps done, seconds since the start) at every loss check
    t_probabilities: Tensor | None = None  # (T,) the importance sampler's final p_t, if it was used
    precision: str = "fp32"  # the precision the run trained in after any trial ("fp32", "bf16", "fp16")
    precision_note: str = ""  # why: what "auto" measured, or the fallback taken


def forget_precision_choices() -> None:
    """Make the next ``precision="auto"`` run (or sampler call) time its candidates again, whatever ran before."""
    forget_choices()


def _auto_key(model: nn.Module, data: Tensor, config: TrainConfig, device: torch.device, labelled: bool) -> tuple:
    # a later "auto" run of the same network on the same batch reuses the choice, so that the runs a
    # notebook compares train in one precision (and only the first pays for the trial)
    return ("train", *network_key(model), tuple(data.shape[1:]), config.batch_size, str(device),
            config.channels_last, config.compile, config.loss, labelled)


def _trial(
    config: TrainConfig, device: torch.device, key: tuple
) -> tuple[list[tuple[str, bool]], PrecisionChoice | None]:
    """The ``(precision, timed)`` of each trial step of ``"auto"`` (a warm-up round, then
    ``auto_trial_steps`` alternating rounds: :func:`~ddpm_utils.precision.trial_order`), or no trial
    and the choice already made."""
    if config.precision != "auto":
        precision, note = resolve(config.precision, device)
        if note:
            warnings.warn(note, stacklevel=3)
        return [], PrecisionChoice(precision, {}, note or "as configured")
    if key in CHOICES:
        return [], reused(CHOICES[key], "run of this model and batch")
    options = candidates(device)
    per_candidate = 1 + config.auto_trial_steps
    if len(options) == 1:
        return [], unmeasured(device, "")
    if config.steps <= len(options) * per_candidate:
        return [], unmeasured(device, f"{config.steps} steps are too few to time {len(options)} precisions")
    return trial_order(options, config.auto_trial_steps), None


def train(
    model: nn.Module,
    schedule: Schedule,
    data: Tensor,
    config: TrainConfig,
    labels: Tensor | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data`` (N, ...) with Algorithm 1 and return it with its EMA copy.

    The data are copied once to the model's device and batches are drawn there by index, so
    no data loader stands between steps. ``labels`` (N,) train a class-conditional model
    ``model(xt, t, y)``; with ``config.p_uncond`` a label is replaced by the null label
    ``model.config.num_classes`` that often (classifier-free guidance).
    On the CPU the run is deterministic for a given ``config.seed``, model initialisation and precision.

    ``config.precision="auto"`` (the default) spends its first steps timing the precisions worth
    trying on this device (:func:`~ddpm_utils.precision.candidates`): each gets one warm-up step, then
    ``config.auto_trial_steps`` timed steps taken in turns with the other candidates, all of them real
    training steps; the rest of the run uses the one whose fastest step was fastest, unless it beats
    float32 by less than 5 %. ``result.precision`` and
    ``result.precision_note`` say what was chosen and why; with ``progress`` the note is printed.
    A later "auto" run of the same model configuration on the same batch shape and device, in the
    same Python session, reuses the choice without a trial (:func:`forget_precision_choices` resets
    it), so the runs a notebook compares train in one precision. Where two candidates are close,
    "auto" can choose differently from session to session: set the precision explicitly for
    bit-for-bit repeatable runs.

    With ``config.loss="vlb"`` each example's loss is its term of the bound at its t (KL for
    t ≥ 1, the discretised decoder at t = 0, so the data must be 8-bit values in [-1, 1]) times T:
    the batch mean is an unbiased estimate of the bound minus L_T, in bits/dim, and ``losses``
    records it. With ``config.t_sampling="importance"`` each loss is also multiplied by
    1/(T p_t), which keeps that expectation.

    Raises:
        ValueError: for a schedule on another device than the model, labels of wrong shape or
            outside [0, num_classes], or (``loss="vlb"``) data outside [-1, 1] or the ε target on a
            schedule with zero terminal SNR.
        FloatingPointError: if the loss becomes NaN or infinite, naming the step.
    """
    device = next(model.parameters()).device
    if schedule.device != device:
        raise ValueError(f"the model is on {device} but the schedule is on {schedule.device}; use schedule.to(device)")
    if data.ndim < 1 or data.shape[0] < 1:
        raise ValueError(f"data must be a non-empty tensor (N, ...), got shape {tuple(data.shape)}")
    if labels is not None and labels.shape != (data.shape[0],):
        raise ValueError(f"labels must have shape ({data.shape[0]},), got {tuple(labels.shape)}")
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if (labels is not None) != (num_classes is not None):
        raise ValueError("pass labels exactly when the model is class-conditional (config.num_classes set)")
    # Value checks, once, here: inside the loop they run only on the CPU (on a GPU each is a sync).
    if labels is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}] ({num_classes} = null label), "
                         f"got min {int(labels.min())} max {int(labels.max())}")
    if config.loss == "vlb":
        check_decoder_data(data)
        # the KL at t = T needs x̂_0; L_simple on ε does not, and trains on any schedule
        check_x0_recoverable(schedule, config.target, schedule.T - 1)
    data = data.to(device, torch.float32)
    if config.channels_last:
        if data.ndim != 4:
            raise ValueError(f"channels_last needs image data (N, C, H, W), got shape {tuple(data.shape)}")
        model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    labels = labels.to(device) if labels is not None else None

    gen = torch.Generator(device).manual_seed(config.seed)
    sampler = ImportanceSampler(schedule.T, device) if config.t_sampling == "importance" else None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda"
    )
    ema = EMA(model, config.ema_decay)
    net = torch.compile(model) if config.compile else model
    key = _auto_key(model, data, config, device, labels is not None)
    trial, choice = _trial(config, device, key)  # "auto": the first steps time each candidate precision
    precision = trial[0][0] if trial else choice.precision
    tried = [p for p, _ in trial] or [precision]
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and "fp16" in tried else None
    trial_times: dict[str, list[float]] = {p: [] for p, _ in trial}
    losses = torch.empty(config.steps, device=device)
    loss_sum = torch.zeros(schedule.T, device=device, dtype=torch.float64)
    loss_count = torch.zeros(schedule.T, device=device, dtype=torch.float64)

    steps = range(config.steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        steps = bar = tqdm(steps, desc="training", unit="step")
    timeline: list[tuple[int, float]] = []
    if bar is not None and config.precision == "auto" and not trial:
        bar.write(str(choice))
    model.train()
    start = time.perf_counter()
    for step in steps:
        if step < len(trial):  # a trial step of "auto": this step's precision, timed unless a warm-up step
            precision = trial[step][0]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_start = time.perf_counter()
        elif step == len(trial) and trial:  # the trial is over: keep the fastest
            choice = CHOICES[key] = choose({p: min(ts) for p, ts in trial_times.items()})
            precision = choice.precision
            if bar is not None:
                bar.write(str(choice))
        # 1. x_0 from the data, t ~ Uniform{0, …, T-1}, ε ~ N(0, I) — Algorithm 1, lines 2–4
        idx = torch.randint(0, data.shape[0], (config.batch_size,), device=device, generator=gen)
        x0 = data[idx]
        if config.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        if sampler is None:
            t = torch.randint(0, schedule.T, (config.batch_size,), device=device, generator=gen)
        else:
            t, t_weight = sampler.sample(config.batch_size, gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        if labels is None:
            predict = net
        else:
            y = labels[idx]
            drop = torch.rand(config.batch_size, device=device, generator=gen) < config.p_uncond
            y = torch.where(drop, torch.full_like(y, num_classes), y)

            def predict(xt, t, y=y):
                return net(xt, t, y)

        # 2. gradient step on the simple loss — Algorithm 1, line 5
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        with autocast(device, precision):
            if config.loss == "simple":
                per_example = l_simple(predict, schedule, x0, t, noise, config.target)
            else:  # the bound's term at t, ×T: its mean over uniform t is the bound minus L_T
                per_example = schedule.T * vlb_terms(predict, schedule, x0, t, noise, config.target, config.variance)
        per_example = per_example.float()
        if sampler is not None:
            sampler.update(t, per_example)
            per_example_weighted = per_example * t_weight
        else:
            per_example_weighted = per_example
        loss = per_example_weighted.mean()
        optimizer.zero_grad(set_to_none=True)
        if precision == "fp16":
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        ema.update(model)
        losses[step] = loss.detach()
        if step < len(trial) and trial[step][1]:  # a timed step, not a warm-up one
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            trial_times[precision].append(time.perf_counter() - step_start)
        if config.record_loss_per_t:
            loss_sum.index_add_(0, t, per_example.detach().double())
            loss_count.index_add_(0, t, torch.ones_like(loss_sum[t]))

        # 3. look at the loss only every few steps: reading it forces a GPU sync
        if (step + 1) % config.check_every == 0 or step + 1 == config.steps:
            recent = losses[max(0, step + 1 - config.check_every) : step + 1]
            bad = (~torch.isfinite(recent)).nonzero()
            if len(bad):
                first = step + 1 - len(recent) + int(bad[0])
                raise FloatingPointError(
                    f"the loss became {recent[int(bad[0])].item()} at step {first}; "
                    "lower the learning rate or check the data for NaN/inf"
                )
            timeline.append((step + 1, time.perf_counter() - start))
            if bar is not None:
                bar.set_postfix(loss=f"{recent.mean().item():.4f}")
    seconds = time.perf_counter() - start
    per_t = (loss_sum / loss_count.clamp(min=1)).float().cpu() if config.record_loss_per_t else None
    probabilities = sampler.probabilities().float().cpu() if sampler is not None else None
    if choice is None:  # the run ended inside the trial (not reached: _trial needs more steps than it takes)
        choice = choose({p: min(ts) for p, ts in trial_times.items() if ts})
    return TrainResult(model, ema.model, losses.cpu(), per_t, seconds, timeline, probabilities, choice.precision,
                       str(choice))


@torch.no_grad()
def loss_per_timestep(
    model,
    schedule: Schedule,
    data: Tensor,
    timesteps: Tensor,
    target: str = "eps",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The mean simple loss of ``model`` on ``data`` (N, ...) at each of ``timesteps`` (k,).

    Evaluates every example at every listed timestep with fresh noise; returns ``(k,)``.
    """
    out = []
    for t_value in timesteps.tolist():
        t = torch.full((data.shape[0],), t_value, device=data.device, dtype=torch.long)
        noise = torch.randn(data.shape, generator=generator, device=data.device)
        out.append(l_simple(model, schedule, data, t, noise, target).mean())
    return torch.stack(out)


CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, model: nn.Module, schedule: Schedule, config: TrainConfig | None = None) -> None:
    """Save the weights of ``model`` (pass the EMA copy) with its config and the schedule.

    Only tensors, numbers, strings and containers are stored, so the file loads with
    ``torch.load(..., weights_only=True)``.
    """
    model_config = getattr(model, "config", None)
    if model_config is None:
        raise ValueError("the model has no .config; only the package's models can be checkpointed")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model_class": type(model).__name__,
            "model_config": asdict(model_config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "schedule": {"kind": schedule.kind, "betas": schedule.betas.cpu()},
            "train_config": asdict(config) if config is not None else None,
        },
        path,
    )


def load_checkpoint(path: str | Path, model: nn.Module, schedule: Schedule | None = None) -> Schedule:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return the saved schedule.

    Raises:
        ValueError: if the checkpoint was saved from another model class or configuration, or
            (when ``schedule`` is given) with another schedule.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a ddpm_utils checkpoint of format {CHECKPOINT_FORMAT}")
    if ckpt["model_class"] != type(model).__name__:
        raise ValueError(f"checkpoint holds a {ckpt['model_class']}, not a {type(model).__name__}")
    saved, current = ckpt["model_config"], asdict(model.config)
    differ = {k: (saved.get(k), current.get(k)) for k in saved.keys() | current.keys() if saved.get(k) != current.get(k)}
    if differ:
        details = ", ".join(f"{k}: saved {a!r}, model {b!r}" for k, (a, b) in sorted(differ.items()))
        raise ValueError(f"checkpoint configuration differs from the model's: {details}")
    saved_schedule = schedule_from_betas(ckpt["schedule"]["betas"], kind=ckpt["schedule"]["kind"])
    if schedule is not None and (
        schedule.T != saved_schedule.T or not torch.allclose(schedule.betas.cpu(), saved_schedule.betas)
    ):
        raise ValueError(
            f"checkpoint was trained with {saved_schedule!r}, not with {schedule!r}"
        )
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in ckpt["state_dict"].items()})
    return saved_schedule.to(device)
