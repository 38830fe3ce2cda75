"""Prediction targets ε, x_0 and v, and the converters between them.

All three describe the same x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε; given x_t, knowing one of them fixes
the other two. With a_t = √ᾱ_t and s_t = √(1-ᾱ_t) (so a_t² + s_t² = 1):

    x_0 = (x_t - s_t ε) / a_t            ε = (x_t - a_t x_0) / s_t
    v   = a_t ε - s_t x_0                (Salimans & Ho 2022, Eq. in Appendix D)
    x_0 = a_t x_t - s_t v                ε = s_t x_t + a_t v

Argument order, the same in every function here: ``(schedule, x, t, …)``, the schedule, then the
tensor whose batch ``t`` indexes, then ``t``, then the other tensors, then options such as
``target`` (as in ``q_sample(schedule, x0, t, noise)``). So ``x0_to_eps(schedule, xt, t, x0)``,
``x0_eps_to_v(schedule, x0, t, eps)``, ``training_target(schedule, x0, t, eps, target)``.

:data:`CONVERTERS` is the one table of targets: for each, how to turn a model output into the
pair ``(x0, eps)`` and how to make the training target from that pair. Adding a target is one
entry there (and its name in :data:`Target`). A sampler calls :func:`split_prediction` once per
step to turn whatever the model predicts into the pair ``(x0, eps)``.

The three targets weigh the same mistake differently: for one prediction, the squared error in ε
is SNR(t) times the squared error in x_0, and in v it is 1 + SNR(t) times (:func:`x0_error_weight`).

At ᾱ_t = 0, the last step of a zero-terminal-SNR schedule (:mod:`ddpm_utils.schedules`),
x_t = ε carries no trace of x_0, so ε̂ cannot give x̂_0: :func:`eps_to_x0` divides by √ᾱ_t = 0 there.
It is not checked per step (on a GPU that would be a host read in every step of a loop); a loop
calls :func:`check_x0_recoverable` once, before it starts. The x_0 and v targets work at every t.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import torch
from torch import Tensor

from .schedules import Schedule, check_timesteps, extract

Target = Literal["eps", "x0", "v"]


def _a_s(schedule: Schedule, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    return extract(schedule.sqrt_alpha_bars, t, x), extract(schedule.sqrt_one_minus_alpha_bars, t, x)


def eps_to_x0(schedule: Schedule, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t — book Eq. (x0-from-eps), Ho et al. Eq. 15.

    Not defined at ᾱ_t = 0 (zero terminal SNR), where it returns inf or NaN unchecked; see
    :func:`check_x0_recoverable`.
    """
    a, s = _a_s(schedule, xt, t)
    return (xt - s * eps) / a


def x0_to_eps(schedule: Schedule, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """ε = (x_t - √ᾱ_t x_0) / √(1-ᾱ_t), the inverse of :func:`eps_to_x0`."""
    a, s = _a_s(schedule, xt, t)
    return (xt - a * x0) / s


def x0_eps_to_v(schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """v = √ᾱ_t ε - √(1-ᾱ_t) x_0 — book Eq. (v-definition), Salimans & Ho 2022."""
    a, s = _a_s(schedule, x0, t)
    return a * eps - s * x0


def v_to_x0(schedule: Schedule, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """x̂_0 = √ᾱ_t x_t - √(1-ᾱ_t) v."""
    a, s = _a_s(schedule, xt, t)
    return a * xt - s * v


def v_to_eps(schedule: Schedule, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """ε̂ = √(1-ᾱ_t) x_t + √ᾱ_t v."""
    a, s = _a_s(schedule, xt, t)
    return s * xt + a * v


class Converter(NamedTuple):
    """How one prediction target relates to the pair (x_0, ε) at (x_t, t)."""

    to_x0_eps: Callable[[Schedule, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # (schedule, xt, t, output) → (x̂_0, ε̂)
    from_x0_eps: Callable[[Schedule, Tensor, Tensor, Tensor], Tensor]  # (schedule, x0, t, eps) → what the model learns


CONVERTERS: dict[str, Converter] = {
    "eps": Converter(lambda schedule, xt, t, eps: (eps_to_x0(schedule, xt, t, eps), eps),
                     lambda schedule, x0, t, eps: eps),
    "x0": Converter(lambda schedule, xt, t, x0: (x0, x0_to_eps(schedule, xt, t, x0)),
                    lambda schedule, x0, t, eps: x0),
    "v": Converter(lambda schedule, xt, t, v: (v_to_x0(schedule, xt, t, v), v_to_eps(schedule, xt, t, v)),
                   x0_eps_to_v),
}
TARGETS = tuple(CONVERTERS)  # ("eps", "x0", "v")


def check_target(target: str) -> None:
    if target not in CONVERTERS:
        raise ValueError(f"unknown prediction target {target!r}; expected one of {TARGETS}")


def check_x0_recoverable(schedule: Schedule, target: str, t_max: int) -> None:
    """Raise a ``ValueError`` if the ε target would have to give x̂_0 at ᾱ_t = 0.

    ``t_max`` is the largest code index a caller will visit. Only code index T-1 of a schedule with
    ``zero_terminal_snr`` has ᾱ = 0, and there x_t = ε: ε̂ says nothing about x_0. Reads Python
    values only, so a loop calls it once, before it starts, on any device.
    """
    if target == "eps" and schedule.zero_terminal_snr and t_max == schedule.T - 1:
        raise ValueError(
            f"ε-prediction cannot recover x̂_0 at ᾱ_t = 0 (zero terminal SNR, code index {schedule.T - 1}): "
            "use target='v' or 'x0', or skip that step"
        )


# Per-timestep w_t of each target, (T,): ‖target̂ - target‖² = w_t ‖x̂_0 - x_0‖² for one prediction at (x_t, t).
# From ε = (x_t - a x_0)/s and v = a ε - s x_0 at fixed x_t: ε̂ - ε = -(a/s)(x̂_0 - x_0), v̂ - v = -(x̂_0 - x_0)/s.
X0_ERROR_WEIGHTS: dict[str, Callable[[Schedule], Tensor]] = {
    "eps": lambda schedule: schedule.snr,  # a²/s² = SNR(t): 0 at ᾱ_t = 0
    "x0": lambda schedule: torch.ones_like(schedule.snr),
    "v": lambda schedule: 1.0 / schedule.one_minus_alpha_bars,  # 1/s² = 1 + SNR(t), accurate where ᾱ_t ≈ 1
}


def x0_error_weight(schedule: Schedule, t: Tensor, target: Target) -> Tensor:
    """w_t, shape ``(B,)``: the squared error of a prediction in ``target`` is w_t times its error in x_0.

    Math: ‖ε̂ - ε‖² = SNR(t) ‖x̂_0 - x_0‖² and ‖v̂ - v‖² = (1 + SNR(t)) ‖x̂_0 - x_0‖² = ‖x̂_0 - x_0‖² / (1-ᾱ_t)
    — book Eq. (target-weights), Salimans & Ho 2022 Sec. 4. So L_simple on ε or v is an x_0
    regression weighted by SNR(t) or 1 + SNR(t). Finite at every t: at ᾱ_t = 0, 0 for ε and 1 for v.
    """
    check_target(target)
    if target not in X0_ERROR_WEIGHTS:
        raise ValueError(f"no x_0 error weight for target {target!r}; add it to X0_ERROR_WEIGHTS")
    check_timesteps(schedule, t)
    return X0_ERROR_WEIGHTS[target](schedule).gather(0, t.long())


def training_target(schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor, target: Target) -> Tensor:
    """What a model with prediction target ``target`` is trained to output for (x_0, t, ε)."""
    check_target(target)
    return CONVERTERS[target].from_x0_eps(schedule, x0, t, eps)


class Prediction(NamedTuple):
    """A model output expressed as both of the quantities a sampler needs."""

    x0: Tensor  # x̂_0, the predicted clean data
    eps: Tensor  # ε̂, the predicted noise


def split_prediction(
    schedule: Schedule,
    xt: Tensor,
    t: Tensor,
    output: Tensor,
    target: Target = "eps",
    clip_x0: bool = False,
) -> Prediction:
    """Turn a model output for ``target`` into ``(x0, eps)``.

    With ``clip_x0`` the predicted x_0 is clamped to [-1, 1] (the data range of images) and ε̂
    is recomputed from the clamped x̂_0 so that the pair still describes the same x_t.
    Clipping is for images only; toy data are not bounded.
    """
    check_target(target)
    if output.shape != xt.shape:
        raise ValueError(f"the model returned shape {tuple(output.shape)} for input {tuple(xt.shape)}")
    x0, eps = CONVERTERS[target].to_x0_eps(schedule, xt, t, output)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = x0_to_eps(schedule, xt, t, x0)
    return Prediction(x0, eps)
