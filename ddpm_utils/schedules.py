"""Noise schedules: every per-timestep coefficient of the forward and posterior processes.

A :class:`Schedule` is built once from the betas, in float64, and stored in float32. It is
frozen: functions elsewhere in the package take it as an argument and never modify it.

Timestep convention (the one place it is defined): the code's index ``t`` runs over
``0, …, T-1`` and stands for the paper's timestep ``t + 1``. So ``betas[t]`` is β_{t+1},
``alpha_bars[t]`` is ᾱ_{t+1}, and ``alpha_bars_prev[t]`` is ᾱ_t with ``alpha_bars_prev[0] = 1``
(ᾱ_0 = 1: no noise at all). Code index 0 is the last denoising step, the one whose
reverse step returns x_0.

Zero terminal SNR (Lin et al. 2024): every β lies in (0, 1) except that the last may be exactly 1,
which makes ᾱ_T = 0, so x_T is pure noise and SNR(T) = 0. :func:`rescale_zero_terminal_snr` turns
any schedule into one of these, and ``make_schedule(..., zero_terminal_snr=True)`` applies it. There
√ᾱ_T = 0: the ε target cannot give x̂_0 at that step (see :mod:`ddpm_utils.targets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

SCHEDULE_KINDS = ("linear", "cosine", "sigmoid")


@dataclass(frozen=True, eq=False)
class Schedule:
    """Per-timestep coefficients of a DDPM, each a float32 tensor of shape ``(T,)``.

    Index ``t`` of every tensor is the paper's timestep ``t + 1`` (see the module docstring).
    """

    kind: str  # "linear", "cosine", "sigmoid" or "custom": how the betas were made
    betas: Tensor  # β_t, variance of q(x_t | x_{t-1})
    alphas: Tensor  # α_t = 1 - β_t
    alpha_bars: Tensor  # ᾱ_t = ∏_{s≤t} α_s (diffusers: alphas_cumprod)
    alpha_bars_prev: Tensor  # ᾱ_{t-1}, with ᾱ_0 = 1 at index 0
    one_minus_alpha_bars: Tensor  # 1 - ᾱ_t, computed as -expm1(log ᾱ_t): accurate where ᾱ_t ≈ 1
    sqrt_alpha_bars: Tensor  # √ᾱ_t, the signal scale of q(x_t | x_0)
    sqrt_one_minus_alpha_bars: Tensor  # √(1-ᾱ_t), the noise scale of q(x_t | x_0)
    snr: Tensor  # signal-to-noise ratio ᾱ_t / (1-ᾱ_t)
    log_snr: Tensor  # log SNR, computed as log ᾱ_t - log(1-ᾱ_t) to stay accurate at both ends
    posterior_variance: Tensor  # β̃_t = β_t (1-ᾱ_{t-1}) / (1-ᾱ_t); 0 at index 0
    posterior_log_variance_clipped: Tensor  # log β̃_t with index 0 replaced (see posterior.py)
    posterior_mean_coef_x0: Tensor  # √ᾱ_{t-1} β_t / (1-ᾱ_t), the weight of x_0 in μ̃_t
    posterior_mean_coef_xt: Tensor  # √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t), the weight of x_t in μ̃_t
    zero_terminal_snr: bool = False  # β_T = 1, so ᾱ_T = 0, SNR(T) = 0 and log SNR(T) = -inf (Lin et al. 2024)

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> "Schedule":
        """A new schedule with every tensor on ``device``; this one is unchanged."""
        values = {
            f.name: (v.to(device) if isinstance(v, Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Schedule(**values)

    def __repr__(self) -> str:
        return (
            f"Schedule(kind={self.kind!r}, T={self.T}, beta_1={self.betas[0].item():.3g}, "
            f"beta_T={self.betas[-1].item():.3g}, alpha_bar_T={self.alpha_bars[-1].item():.3g}, "
            f"zero_terminal_snr={self.zero_terminal_snr}, device={self.device})"
        )


def _checked_betas(betas: Tensor | list[float]) -> Tensor:
    """``betas`` as a float64 CPU tensor, or a ValueError unless they are a non-empty 1-D sequence of finite
    numbers in (0, 1), the last one in (0, 1] (zero terminal SNR)."""
    betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    if betas.ndim != 1 or betas.numel() < 1:
        raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
    if not torch.isfinite(betas).all():
        raise ValueError("betas must be finite; got NaN or inf")
    ones = (betas[:-1] == 1).nonzero().flatten()
    if len(ones):  # ᾱ would be 0 from there on, and every later step would divide 0 by 0
        raise ValueError(
            f"beta = 1 is allowed only at the last step (zero terminal SNR, ᾱ_T = 0); got beta = 1 at "
            f"code index {int(ones[0])} of {len(betas)}"
        )
    if (betas <= 0).any() or (betas > 1).any():
        bad = betas[(betas <= 0) | (betas > 1)]
        raise ValueError(
            f"every beta must lie in the open interval (0, 1), the last one in (0, 1]; got {bad.numel()} "
            f"outside it, e.g. {bad[0].item():.6g}"
        )
    return betas


def schedule_from_betas(betas: Tensor | list[float], kind: str = "custom") -> Schedule:
    """Build a :class:`Schedule` from explicit betas ``(β_1, …, β_T)``.

    Every coefficient is computed in float64 and then stored as float32.

    The last beta may be exactly 1 (zero terminal SNR, Lin et al. 2024): then ᾱ_T = 0,
    ``sqrt_alpha_bars[-1] = snr[-1] = 0``, ``log_snr[-1] = -inf`` and ``zero_terminal_snr`` is set;
    every other coefficient stays finite (at T: β̃_T = 1-ᾱ_{T-1}, μ̃_T = √ᾱ_{T-1} x_0 + 0 · x_T).

    Raises:
        ValueError: if the betas are not a non-empty 1-D sequence of finite numbers in (0, 1),
            the last one in (0, 1].
    """
    betas = _checked_betas(betas)
    alphas = 1.0 - betas
    # ᾱ_t as exp of a cumulative sum of logs: the same number as cumprod, without
    # accumulating rounding over a thousand multiplications. With β_T = 1, log ᾱ_T = -inf and ᾱ_T = 0.
    log_alpha_bars = torch.cumsum(torch.log(alphas), dim=0)
    alpha_bars = torch.exp(log_alpha_bars)
    alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
    one_minus_alpha_bars = -torch.expm1(log_alpha_bars)  # 1 - ᾱ_t, accurate when ᾱ_t ≈ 1

    posterior_variance = betas * (1.0 - alpha_bars_prev) / one_minus_alpha_bars
    # β̃ at index 0 is exactly 0 (the posterior of x_0 given x_1 and x_0 is a point mass);
    # its log would be -inf, so the log takes the next value instead (posterior.py explains).
    first = posterior_variance[1] if len(betas) > 1 else betas[0]
    posterior_log_variance_clipped = torch.log(torch.cat([first.reshape(1), posterior_variance[1:]]))

    values = dict(
        betas=betas,
        alphas=alphas,
        alpha_bars=alpha_bars,
        alpha_bars_prev=alpha_bars_prev,
        one_minus_alpha_bars=one_minus_alpha_bars,
        sqrt_alpha_bars=torch.sqrt(alpha_bars),
        sqrt_one_minus_alpha_bars=torch.sqrt(one_minus_alpha_bars),
        snr=alpha_bars / one_minus_alpha_bars,
        log_snr=log_alpha_bars - torch.log(one_minus_alpha_bars),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=posterior_log_variance_clipped,
        posterior_mean_coef_x0=torch.sqrt(alpha_bars_prev) * betas / one_minus_alpha_bars,
        posterior_mean_coef_xt=torch.sqrt(alphas) * (1.0 - alpha_bars_prev) / one_minus_alpha_bars,
    )
    values = {k: v.to(torch.float32) for k, v in values.items()}
    return Schedule(kind=kind, **values, zero_terminal_snr=bool(betas[-1] == 1))


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_t evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4).

    The defaults are the paper's, chosen for T = 1000. For another T they are not rescaled:
    a short chain with these betas ends far from N(0, I) (improved-diffusion rescales them
    by 1000 / T instead).
    """
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def linear_betas_reaching(T: int, alpha_bar_T: float = 4.04e-5, ratio: float = 200.0) -> Tensor:
    """Linear β_t with β_1 = β_T / ``ratio``, and β_T chosen so that ᾱ_T = ``alpha_bar_T``.

    A family of linear schedules that destroy the data equally whatever T is: fewer steps means
    bigger steps, never a noisier or cleaner end point. The defaults are Ho et al.'s schedule
    (β from 1e-4 to 0.02, ratio 200) and its end point ᾱ_1000 ≈ 4.04e-5; T = 1 gives the single
    step β_1 = 1 - ``alpha_bar_T``. β_T is found by bisection, since ᾱ_T falls as β_T grows.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer of at least 1, got {T!r}")
    if not 0.0 < alpha_bar_T < 1.0:
        raise ValueError(f"alpha_bar_T must lie in (0, 1), got {alpha_bar_T}")
    if not ratio >= 1.0:
        raise ValueError(f"ratio = β_T / β_1 must be at least 1, got {ratio}")
    shape = torch.linspace(1.0 / ratio, 1.0, T, dtype=torch.float64) if T > 1 else torch.ones(1, dtype=torch.float64)
    target = math.log(alpha_bar_T)
    low, high = 0.0, 1.0  # β_T: log ᾱ_T(low) = 0 > target, log ᾱ_T(high) = -inf < target
    for _ in range(200):
        mid = 0.5 * (low + high)
        if torch.log1p(-mid * shape).sum().item() > target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high) * shape


def _betas_from_alpha_bar(alpha_bar, T: int, max_beta: float) -> Tensor:
    """Discretise a continuous ᾱ(τ), τ ∈ [0, 1], into betas: β_t = 1 - ᾱ(t/T) / ᾱ((t-1)/T)."""
    tau = torch.arange(T + 1, dtype=torch.float64) / T
    a = alpha_bar(tau)
    betas = 1.0 - a[1:] / a[:-1]
    return betas.clamp(max=max_beta)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal (2021) Eq. 17: ᾱ(τ) = f(τ)/f(0), f(τ) = cos²((τ + s)/(1 + s) · π/2).

    β is clipped at ``max_beta`` because ᾱ(1) = 0 would make the last β equal to 1.
    """
    def f(tau: Tensor) -> Tensor:
        return torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2

    return _betas_from_alpha_bar(lambda tau: f(tau) / f(torch.zeros(())), T, max_beta)


def sigmoid_betas(
    T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> Tensor:
    """Chen (2023), Algorithm 1: ᾱ(τ) = (σ(end/τ') - σ((τ(end-start)+start)/τ')) / (σ(end/τ') - σ(start/τ')).

    Here τ' is the temperature ``tau``; ᾱ falls from 1 to 0 along a sigmoid, more slowly at
    both ends than the linear schedule. β is clipped at ``max_beta`` as for the cosine schedule.
    """
    if not start < end:
        raise ValueError(f"sigmoid schedule needs start < end, got start={start}, end={end}")
    if tau <= 0:
        raise ValueError(f"sigmoid schedule needs tau > 0, got {tau}")
    v_start, v_end = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64)), torch.sigmoid(
        torch.tensor(end / tau, dtype=torch.float64)
    )

    def alpha_bar(t: Tensor) -> Tensor:
        return (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)

    return _betas_from_alpha_bar(alpha_bar, T, max_beta)


def rescale_zero_terminal_snr(betas: Tensor | list[float]) -> Tensor:
    """The betas of the same schedule moved to zero terminal SNR — Lin et al. 2024, Algorithm 1.

    Math: √ᾱ'_t = √ᾱ_1 (√ᾱ_t - √ᾱ_T) / (√ᾱ_1 - √ᾱ_T): √ᾱ is shifted so that √ᾱ'_T = 0 and scaled so
    that √ᾱ'_1 = √ᾱ_1 — book Eq. (zero-snr). Then β'_t = 1 - ᾱ'_t/ᾱ'_{t-1}, so β'_1 = β_1 and
    β'_T = 1 exactly. Returns float64 betas of the same length, for :func:`schedule_from_betas`.

    Computed from the drop of √ᾱ over each step, d_t = √ᾱ_{t-1} - √ᾱ_t = √ᾱ_{t-1} (1 - √(1-β_t)),
    rather than from a ratio of ᾱ': near t = 1, where β_t ≈ 1e-4, 1 - ᾱ'_t/ᾱ'_{t-1} would lose four
    digits to cancellation.

    Raises:
        ValueError: for fewer than 2 betas (one step cannot keep ᾱ_1 and reach ᾱ_T = 0), or betas
            that :func:`schedule_from_betas` would refuse.
    """
    betas = _checked_betas(betas)  # refuses what schedule_from_betas would, with its messages
    if len(betas) < 2:
        raise ValueError("zero terminal SNR needs T >= 2: a single step cannot keep ᾱ_1 and reach ᾱ_T = 0")
    zero = torch.zeros(1, dtype=torch.float64)
    log_alpha_bars = torch.cumsum(torch.log1p(-betas), dim=0)
    sqrt_ab_prev = torch.exp(0.5 * torch.cat([zero, log_alpha_bars[:-1]]))  # √ᾱ_{t-1}, with √ᾱ_0 = 1
    drops = sqrt_ab_prev * -torch.expm1(0.5 * torch.log1p(-betas))  # d_t = √ᾱ_{t-1} - √ᾱ_t, (T,)
    # 1. shift: c_t = √ᾱ_t - √ᾱ_T = Σ_{s>t} d_s, the drops still to come; exactly 0 at T
    shifted = torch.cat([drops[1:].flip(0).cumsum(0).flip(0), zero])
    # 2. scale: a factor on c leaves every ratio ᾱ'_t/ᾱ'_{t-1} = (c_t/c_{t-1})² of t ≥ 2 as it is; it sets
    #    only ᾱ'_1, and the factor that keeps ᾱ'_1 = ᾱ_1 keeps β'_1 = β_1
    # 3. β'_t = 1 - (c_t/c_{t-1})² = d_t (2 c_{t-1} - d_t) / c_{t-1}² for t ≥ 2; at T, c_T = 0 and β'_T = 1
    prev, d = shifted[:-1], drops[1:]
    rescaled = torch.cat([betas[:1], d * (2 * prev - d) / prev**2])
    rescaled[-1] = 1.0  # d_T = c_{T-1} makes this 1 already; set it so no rounding can move it
    return rescaled


def make_schedule(kind: str = "linear", T: int = 1000, zero_terminal_snr: bool = False, **params) -> Schedule:
    """Build one of the named schedules.

    Args:
        kind: ``"linear"`` (params ``beta_start=1e-4, beta_end=0.02``), ``"cosine"``
            (``s=0.008, max_beta=0.999``) or ``"sigmoid"`` (``start=-3, end=3, tau=1, max_beta=0.999``).
        T: number of diffusion steps, at least 1 (at least 2 with ``zero_terminal_snr``).
        zero_terminal_snr: rescale the betas with :func:`rescale_zero_terminal_snr`, so that
            ᾱ_T = 0 (Lin et al. 2024).
        **params: the schedule's own parameters, above.

    Raises:
        ValueError: for an unknown kind, T < 1, unknown parameters, or betas outside (0, 1).
    """
    makers = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}
    if kind not in makers:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer of at least 1, got {T!r}")
    try:
        betas = makers[kind](T, **params)
    except TypeError as err:  # an unexpected keyword argument
        raise ValueError(f"bad parameters for the {kind!r} schedule: {err}") from None
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return schedule_from_betas(betas, kind=kind)


def free_to_read(tensor: Tensor) -> bool:
    """Whether the host can read ``tensor``'s values without waiting for a device: it is on the CPU.

    Reading a GPU tensor's values (``int(t.max())``, ``bool(mask.any())``, ``.item()``) makes
    the CPU wait until every kernel queued before it has run — a sync, which stalls the loop that
    feeds the GPU. So checks that need values (a range) run only where this is true; checks of
    dtype, shape and device read metadata and run everywhere. See :func:`check_timesteps`.
    """
    return tensor.device.type == "cpu"


def check_timesteps(schedule: Schedule, t: Tensor, x: Tensor | None = None) -> None:
    """Raise a ``ValueError`` unless ``t`` is an integer tensor ``(B,)`` of indices in [0, T-1].

    With ``x``, also check that ``t`` has one entry per example of ``x`` and that ``x``, ``t``
    and the schedule are on one device (nothing is moved silently).

    Dtype, shape and device are checked on every call. The range needs the values of ``t``, so
    it is checked only where reading them is free (:func:`free_to_read`): for a ``t`` on the CPU.
    For a ``t`` on a GPU it is not checked here, since this runs in every training and sampling
    step and each read would be a sync; an index outside [0, T-1] then fails in the gather of
    :func:`extract` (on CUDA a device-side assert, reported at the next sync). The loops of this
    package (``train``, the samplers) draw or build ``t`` in range themselves; a ``t`` from
    elsewhere can be checked once on the CPU before it is moved to the device.
    """
    if not isinstance(t, Tensor):
        raise ValueError(f"t must be a tensor of timestep indices, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"t must be an integer (long) tensor of timestep indices, got {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    if x is not None:
        if x.ndim < 1 or x.shape[0] != t.shape[0]:
            raise ValueError(
                f"t has shape {tuple(t.shape)} but the data has shape {tuple(x.shape)}; "
                "expected one timestep per example"
            )
        if x.device != schedule.device:
            raise ValueError(
                f"the data is on {x.device} but the schedule is on {schedule.device}; "
                "use schedule.to(device)"
            )
    if t.device != schedule.device:
        raise ValueError(
            f"t is on {t.device} but the schedule is on {schedule.device}; use schedule.to(device)"
        )
    if free_to_read(t) and t.numel() and (int(t.min()) < 0 or int(t.max()) >= schedule.T):
        raise ValueError(
            f"timestep indices must lie in [0, {schedule.T - 1}] (code index t is the paper's t+1); "
            f"got min {int(t.min())}, max {int(t.max())}"
        )


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims to ``v`` (shape ``(B,)``) until it has ``ndim`` dims."""
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a tensor of {v.ndim} dims to {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def extract(coef: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """``coef[t]`` shaped to broadcast against ``x``: ``(B,)`` → ``(B, 1, …, 1)``.

    The one helper that lets the same code serve ``(B,)`` toys, ``(B, D)`` points and
    ``(B, C, H, W)`` images. ``t`` is not validated here (see :func:`check_timesteps`), but
    an index outside [0, T-1] fails in the gather, at either end: unlike ``coef[t]``, ``gather``
    does not wrap a negative index around to the end.
    """
    return append_dims(coef.gather(0, t.long()), x.ndim).to(x.dtype)
