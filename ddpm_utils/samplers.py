"""Samplers: ancestral DDPM (Ho et al. Algorithm 2), DDIM (Song et al. 2021) and DPM-Solver++(2M) (Lu et al. 2022).

Every sampler has one signature, and :data:`SAMPLERS` lists them by name::

    sampler(model, schedule, shape_or_xT, *, steps=…, spacing=None, target="eps", clip_x0=False,
            generator=None, callback=None, progress=False, labels=None, w=None, guidance_scale=None,
            precision="fp32", <its own options>) -> x_0

Everything after ``shape_or_xT`` is keyword-only. ``shape_or_xT`` is either the shape of the batch
to draw (x_T ~ N(0, I) is drawn from ``generator`` on the schedule's device) or x_T itself.
``model`` is any callable ``model(xt, t)``: a network, an oracle, or a wrapper such as
:class:`~ddpm_utils.guidance.ClassifierFreeGuidance`. A class-conditional ``model(xt, t, y)`` is
sampled with ``labels`` (an int or shape ``(B,)``) and, for classifier-free guidance, a strength in
either convention: Ho & Salimans' ``w`` (0 = no guidance) or ``guidance_scale`` s = 1 + w (1 = no
guidance, as in diffusers); each step then makes one network call on a batch of 2B
(:func:`~ddpm_utils.guidance.guided`). ``callback(step)`` is called once per visited
step, before the step is taken, with one :class:`SamplerStep`; read its fields by name, as later
versions may add fields. DDPM's own option is ``variance``, DDIM's is ``eta``; DPM-Solver++(2M)
has none.

``precision`` runs the model under autocast (``"bf16"``, or ``"fp16"`` on CUDA) with its output
returned in float32, so the update arithmetic stays float32; ``"auto"`` times one call of the model
on x_T in each candidate precision before the loop and keeps the fastest
(:func:`~ddpm_utils.precision.sampling_precision`). Every sampler runs its loop under
``torch.inference_mode`` and returns an ordinary copy of the samples; the tensors a callback receives
are inference tensors (read them, or clone them to keep).

No loop reads a tensor back to the host, which on a GPU would stall it: the visited code
indices are made on the CPU and read once, before the loop, and the ``t`` each step builds is in
range by construction (``check_timesteps`` reads only a ``t`` on the CPU).

On a schedule with zero terminal SNR, a sampler whose visited steps include code index T-1
(ᾱ = 0) refuses ``target="eps"`` with a ``ValueError`` before the model runs: ε̂ cannot give x̂_0
there (:func:`~ddpm_utils.targets.check_x0_recoverable`). The x_0 and v targets sample normally.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal, NamedTuple, Sequence

import torch
from torch import Tensor

from .guidance import guided
from .precision import check_precision, sampling_precision
from .reverse import VARIANCES, Model, Variance, p_mean_variance
from .schedules import Schedule, schedule_from_betas
from .targets import Target, check_target, check_x0_recoverable, split_prediction


class SamplerStep(NamedTuple):
    """What a sampler's callback receives at each visited step, before the step is taken."""

    t: int  # code index of this step (the paper's t + 1)
    xt: Tensor  # the current x_t, shape of the batch
    x0: Tensor  # the model's x̂_0 at (x_t, t), clipped to [-1, 1] when clip_x0
    eps: Tensor  # the model's ε̂ at (x_t, t), consistent with x0: x_t = √ᾱ_t x̂_0 + √(1-ᾱ_t) ε̂


Callback = Callable[[SamplerStep], None]
Spacing = Literal["linspace", "trailing", "leading"]
SPACINGS = ("linspace", "trailing", "leading")


def timestep_subsequence(T: int, steps: int | Sequence[int] | None, spacing: Spacing | None = None) -> Tensor:
    """The code indices a sampler visits, increasing.

    ``None`` means all T steps; a sequence is used as given. An int ``n`` picks n indices by
    ``spacing``, named as in Lin et al. 2024 (Table 2) and diffusers' ``timestep_spacing``:

    - ``"linspace"`` (the default): n indices evenly spaced from 0 to T-1, rounded; n = 1 gives
      [T-1]. Both ends are visited (improved-diffusion's ``space_timesteps(T, [n])``).
    - ``"trailing"``: τ_j = round(j T/n) - 1 for j = 1 … n, evenly spaced down from T-1; it
      skips t = 0 unless n > 2T/3.
    - ``"leading"``: τ_j = j ⌊T/n⌋ for j = 0 … n-1 (diffusers' ``steps_offset`` = 0). Unless n = T it
      stops short of T-1, so x_T ~ N(0, I) is drawn where some signal remains — Lin et al.'s point.

    Sampling from N(0, I) is right only at T-1, so "linspace" and "trailing" are the sound choices.
    """
    if spacing is not None and not isinstance(steps, int):
        raise ValueError(f"spacing applies only when steps is an int, got steps={steps!r}")
    if spacing is not None and spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    if steps is None:
        return torch.arange(T)
    if isinstance(steps, int):
        if not 1 <= steps <= T:
            raise ValueError(f"steps must lie in [1, T={T}], got {steps}")
        if spacing == "trailing":  # T j / n is exact at a .5 tie, so it rounds half to even as numpy does
            return (T * torch.arange(1, steps + 1, dtype=torch.float64) / steps).round().long() - 1
        if spacing == "leading":
            return torch.arange(steps) * (T // steps)
        if steps == 1:
            return torch.tensor([T - 1])
        return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()
    try:
        ts = torch.as_tensor(list(steps), dtype=torch.long)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"steps must be None, an int or a sequence of code indices, got {steps!r}") from None
    if ts.ndim != 1 or ts.numel() == 0 or (ts[1:] <= ts[:-1]).any() or ts[0] < 0 or ts[-1] >= T:
        raise ValueError(f"a step sequence must be strictly increasing code indices in [0, {T - 1}]")
    return ts


def _log_alpha_bars(schedule: Schedule, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    """log ᾱ at each of ``timesteps`` and at the visited step before it (0 before the first).

    Float64 on the CPU, summed from log(1-β): then 1 - ᾱ_t/ᾱ_{t'} = -expm1(log ᾱ_t - log ᾱ_{t'})
    keeps full precision even between adjacent steps near t = 0, where the ratio is within β of 1
    and 1 - (a ratio of float32 ᾱ) is off by up to 6e-4 relative (cosine; 4e-4 linear).
    """
    log_alpha_bars = torch.cumsum(torch.log1p(-schedule.betas.double().cpu()), dim=0)
    chosen = log_alpha_bars[timesteps.cpu()]
    return chosen, torch.cat([torch.zeros(1, dtype=torch.float64), chosen[:-1]])


def respace(schedule: Schedule, timesteps: Tensor) -> Schedule:
    """The schedule of a shorter chain that visits only ``timesteps`` (Nichol & Dhariwal Sec. 4).

    Its ᾱ at step i equals the original ᾱ at ``timesteps[i]``, so a model trained on the long
    chain serves the short one: β'_i = 1 - ᾱ_{τ_i} / ᾱ_{τ_{i-1}}.
    """
    chosen, previous = _log_alpha_bars(schedule, timesteps)
    betas = -torch.expm1(chosen - previous)
    return schedule_from_betas(betas, kind=f"{schedule.kind}-respaced").to(schedule.device)


class RespacedModel:
    """``model`` as seen from a respaced chain: the short chain's index i is the model's ``timesteps[i]``.

    The model was trained on the long chain's code indices; :func:`respace` builds the short chain,
    and this wrapper translates its indices back, so ``p_mean_variance(RespacedModel(model, ts),
    respace(schedule, ts), xt, i)`` is one step of the respaced sampler.
    """

    def __init__(self, model: Model, timesteps: Tensor):
        self.model, self.timesteps = model, timesteps  # timesteps: (n,) long, on the model's device

    def __call__(self, xt: Tensor, i: Tensor) -> Tensor:
        return self.model(xt, self.timesteps[i])


def _start(schedule: Schedule, model: Model, shape_or_xT, generator) -> Tensor:
    """x_T: the given tensor, or a draw of the given shape; both on the schedule's device, as the model."""
    device = schedule.device
    while not isinstance(model, torch.nn.Module) and hasattr(model, "model"):  # through guidance wrappers
        model = model.model
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None and param.device != device:
            raise ValueError(f"the model is on {param.device} but the schedule is on {device}; move one")
    if isinstance(shape_or_xT, Tensor):
        if shape_or_xT.device != device:
            raise ValueError(f"x_T is on {shape_or_xT.device} but the schedule is on {device}")
        return shape_or_xT
    return torch.randn(tuple(shape_or_xT), generator=generator, device=device)


def _inference(sampler):
    """Run ``sampler`` under ``torch.inference_mode`` (no autograd bookkeeping, no version counters) and return
    a copy of its samples made outside it, an ordinary tensor that later code may modify or differentiate."""

    @functools.wraps(sampler)
    def run(*args, **kwargs):
        with torch.inference_mode():
            samples = sampler(*args, **kwargs)
        return samples.clone()

    return run


def _steps(indices: Sequence[int], progress: bool, desc: str):
    if not progress:
        return indices
    from tqdm.auto import tqdm

    return tqdm(indices, desc=desc, unit="step")


@_inference
def ddpm_sample(
    model: Model,
    schedule: Schedule,
    shape_or_xT: Sequence[int] | Tensor,
    *,
    steps: int | Sequence[int] | None = None,
    spacing: Spacing | None = None,
    target: Target = "eps",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    labels: Tensor | int | None = None,
    w: float | None = None,
    guidance_scale: float | None = None,
    precision: str = "fp32",
    variance: Variance = "beta_tilde",
) -> Tensor:
    """Ancestral sampling, Ho et al. Algorithm 2.

    For t = T, …, 1: x_{t-1} = μ_θ(x_t, t) + σ_t z with z ~ N(0, I), and no noise on the last
    step (it returns the mean). ``steps`` visits a subsequence of the T steps through the
    respaced chain of :func:`respace`; ``spacing`` chooses an int number of them (see
    :func:`timestep_subsequence`, default "linspace"). ``clip_x0`` clamps x̂_0 to [-1, 1] (images only).
    ``variance`` is σ_t²: ``"beta_tilde"`` (β̃_t) or ``"beta"`` (β_t), see
    :func:`~ddpm_utils.reverse.reverse_variance`.
    """
    check_target(target)
    check_precision(precision)
    model = guided(model, labels, w, guidance_scale)
    if variance not in VARIANCES:
        raise ValueError(f"unknown reverse variance {variance!r}; expected one of {VARIANCES}")
    ts = timestep_subsequence(schedule.T, steps, spacing)  # (n,) on the CPU
    t_values = ts.tolist()  # the callback's t as Python ints: the loop reads no tensor
    check_x0_recoverable(schedule, target, t_values[-1])
    xt = _start(schedule, model, shape_or_xT, generator)
    model, _ = sampling_precision(model, precision, xt, t_values[-1])  # "auto" times the first step's call
    if steps is None:
        chain, chain_model = schedule, model
    else:  # the short chain, and the model called with the long chain's index of each of its steps
        chain, chain_model = respace(schedule, ts), RespacedModel(model, ts.to(schedule.device))

    for i in _steps(range(len(ts) - 1, -1, -1), progress, "DDPM"):
        i_batch = torch.full((xt.shape[0],), i, device=xt.device, dtype=torch.long)
        # 1. the model's Gaussian p_θ(x_{t-1} | x_t) — Ho et al. Eq. 11
        step = p_mean_variance(chain_model, chain, xt, i_batch, target, variance, clip_x0)
        if callback is not None:
            callback(SamplerStep(t_values[i], xt, step.x0, step.eps))
        # 2. sample from it; the last step returns the mean — Algorithm 2, line 4
        if i > 0:
            noise = torch.randn(xt.shape, generator=generator, device=xt.device, dtype=xt.dtype)
            xt = step.mean + torch.exp(0.5 * step.log_variance) * noise
        else:
            xt = step.mean
    return xt


@_inference
def ddim_sample(
    model: Model,
    schedule: Schedule,
    shape_or_xT: Sequence[int] | Tensor,
    *,
    steps: int | Sequence[int] | None = 50,
    spacing: Spacing | None = None,
    target: Target = "eps",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    labels: Tensor | int | None = None,
    w: float | None = None,
    guidance_scale: float | None = None,
    precision: str = "fp32",
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12) on a subsequence of ``steps`` timesteps.

    x_{t'} = √ᾱ_{t'} x̂_0 + √(1-ᾱ_{t'} - σ²) ε̂ + σ z, with t' the next visited step (smaller index) and
    σ = η √((1-ᾱ_{t'})/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_{t'}) (Eq. 16). η = 0 is deterministic; η = 1 on all
    T steps is the DDPM sampler with σ_t² = β̃_t. ``spacing`` is that of
    :func:`timestep_subsequence` (default "linspace").
    """
    check_target(target)
    check_precision(precision)
    model = guided(model, labels, w, guidance_scale)
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = timestep_subsequence(schedule.T, steps, spacing)
    t_values = ts.tolist()  # the code indices as Python ints: the loop reads no tensor
    check_x0_recoverable(schedule, target, t_values[-1])
    xt = _start(schedule, model, shape_or_xT, generator)
    model, _ = sampling_precision(model, precision, xt, t_values[-1])  # "auto" times the first step's call
    # per visited step, in float64: ᾱ_t, ᾱ_{t'} and 1 - ᾱ as -expm1(log ᾱ), accurate near ᾱ = 1
    log_ab, log_ab_prev = _log_alpha_bars(schedule, ts)  # (n,), log ᾱ_{t'} = 0 after the last step
    one_minus, one_minus_prev = -torch.expm1(log_ab), -torch.expm1(log_ab_prev)
    # σ of Eq. 16, with 1 - ᾱ_t/ᾱ_{t'} = -expm1(log ᾱ_t - log ᾱ_{t'}) (see _log_alpha_bars)
    sigmas = (eta * torch.sqrt(one_minus_prev / one_minus * -torch.expm1(log_ab - log_ab_prev))).tolist()
    alpha_bars_prev, one_minus_prev = torch.exp(log_ab_prev).tolist(), one_minus_prev.tolist()
    for i in _steps(range(len(ts) - 1, -1, -1), progress, "DDIM"):
        t = t_values[i]
        t_batch = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
        # 1. predict x̂_0 and ε̂ from the model output
        pred = split_prediction(schedule, xt, t_batch, model(xt, t_batch), target, clip_x0)
        if callback is not None:
            callback(SamplerStep(t, xt, pred.x0, pred.eps))
        # 2. the noise level of this step — Eq. 16, computed above
        sigma = sigmas[i]
        # 3. point back along ε̂ to the noise level of t' — Eq. 12
        xt = alpha_bars_prev[i] ** 0.5 * pred.x0 + max(one_minus_prev[i] - sigma**2, 0.0) ** 0.5 * pred.eps
        if sigma > 0:
            xt = xt + sigma * torch.randn(xt.shape, generator=generator, device=xt.device, dtype=xt.dtype)
    return xt


@_inference
def dpmpp_2m_sample(
    model: Model,
    schedule: Schedule,
    shape_or_xT: Sequence[int] | Tensor,
    *,
    steps: int | Sequence[int] | None = 20,
    spacing: Spacing | None = None,
    target: Target = "eps",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    labels: Tensor | int | None = None,
    w: float | None = None,
    guidance_scale: float | None = None,
    precision: str = "fp32",
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the
    probability-flow ODE in log-SNR time λ = log(a/s), with a = √ᾱ, s = √(1-ᾱ) (Lu et al.'s α, σ),
    on data prediction.

    Math: from the visited step t to the next one t' (h = λ_t' - λ_t > 0),
    x_t' = (s_t'/s_t) x_t + a_t' (1 - e^{-h}) D,  D = (1 + 1/2r) x̂_0(t) - (1/2r) x̂_0(t''),
    with t'' the step visited before t, h_prev = λ_t - λ_t'' and
    r = h_prev / h — book Eq. (dpm-2m). The first step has no previous x̂_0 and takes D = x̂_0(t),
    the first-order step, which is DDIM with η = 0. The last step goes to ᾱ = 1 (s = 0, λ = ∞),
    where the step returns D but r = 0 would put an infinite weight on the correction, so it must
    be first order: the sample is x̂_0 of the last visited step, as in DDIM (diffusers'
    ``final_sigmas_type="zero"``; Lu et al. stop at a small noise level instead). Deterministic: the
    generator is used only to draw x_T.

    ``spacing`` is that of :func:`timestep_subsequence`, but an int ``steps`` with no spacing
    given is spaced "trailing", not "linspace": "linspace" visits code index 0 (ᾱ = 0.9999 on the
    linear schedule, λ = 4.6), so its last second-order step spans a λ interval several times
    the one before it (r ≈ 0.2 at 10 steps) and extrapolates x̂_0 far; on the book's 1-D mixture
    with the exact ε* this more than doubles the variance of 10-step samples (book chapter 4).
    """
    check_target(target)
    check_precision(precision)
    model = guided(model, labels, w, guidance_scale)
    if spacing is None and isinstance(steps, int):
        spacing = "trailing"
    ts = timestep_subsequence(schedule.T, steps, spacing)
    t_values = ts.tolist()  # the code indices as Python ints: the loop reads no tensor
    check_x0_recoverable(schedule, target, t_values[-1])
    xt = _start(schedule, model, shape_or_xT, generator)
    model, _ = sampling_precision(model, precision, xt, t_values[-1])  # "auto" times the first step's call
    log_ab, log_ab_next = _log_alpha_bars(schedule, ts)  # (n,) float64; the step after ts[i] has log ᾱ at i
    # λ = log a - log s = ½ log ᾱ - ½ log(1 - ᾱ); 1 - ᾱ as -expm1(log ᾱ), accurate near ᾱ = 1
    lam = 0.5 * log_ab - 0.5 * torch.log(-torch.expm1(log_ab))
    # per step i (from ts[i] to the next visited step, or to ᾱ = 1 after ts[0]), in float64 before the
    # loop: h = λ_t' - λ_t (∞ on the last step), s_t'/s_t, a_t' (1 - e^{-h}), and h/(2 h_prev) = 1/2r
    # where the step has a previous one (h_prev of step i is h of step i + 1). With zero terminal SNR, λ = -∞ at
    # code index T-1: h = ∞ on the first step (first order anyway) and 1/2r = h/∞ = 0 on the second, not NaN
    n = len(t_values)
    h = torch.cat([torch.full((1,), torch.inf, dtype=torch.float64), lam[:-1] - lam[1:]])  # (n,)
    s_ratio = torch.sqrt(torch.expm1(log_ab_next) / torch.expm1(log_ab))  # 0 on the last step (ᾱ_t' = 1)
    x0_weight = torch.exp(0.5 * log_ab_next) * -torch.expm1(-h)  # 1 on the last step
    half_inv_r = torch.zeros(n, dtype=torch.float64)
    half_inv_r[1 : n - 1] = h[1 : n - 1] / (2 * h[2:n])
    s_ratio, x0_weight, half_inv_r = s_ratio.tolist(), x0_weight.tolist(), half_inv_r.tolist()
    x0_prev = None
    for i in _steps(range(n - 1, -1, -1), progress, "DPM-Solver++(2M)"):
        t = t_values[i]
        t_batch = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
        # 1. the data prediction x̂_0 at (x_t, t)
        pred = split_prediction(schedule, xt, t_batch, model(xt, t_batch), target, clip_x0)
        if callback is not None:
            callback(SamplerStep(t, xt, pred.x0, pred.eps))
        # 2. D: first order on the first and the last step, else the multistep correction — Eq. (dpm-2m)
        if x0_prev is None or i == 0:
            d = pred.x0
        else:
            d = (1 + half_inv_r[i]) * pred.x0 - half_inv_r[i] * x0_prev
        # 3. the exponential-integrator step to the next visited noise level
        xt = s_ratio[i] * xt + x0_weight[i] * d
        x0_prev = pred.x0
    return xt


# Every sampler of the package, by name. A new sampler follows the signature of the module
# docstring and is listed here; tests/test_sampler_contract.py then checks it with the others.
SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpmpp_2m": dpmpp_2m_sample}
