"""The schedule explorer: sliders for a noise schedule, and what it does to ᾱ_t, SNR and a digit.

:func:`explorer_figure` draws one state of the explorer (usable, and tested, without widgets);
:func:`schedule_explorer` wires it to ipywidgets (works with ipywidgets 7 and 8).

:data:`EXPLORER_CONTROLS` is the one table of the controls' ranges, steps and starting values;
this explorer and the kernel-free one of :mod:`ddpm_utils.static_explorer` both build their
controls from it, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .schedules import SCHEDULE_KINDS, Schedule, make_schedule


@dataclass(frozen=True)
class Slider:
    """One slider of the schedule explorers: its range, step and starting value."""

    min: float  # lowest position; log₁₀ of the value where ``log10``
    max: float | None  # highest position, likewise; None: the current T (the t slider)
    step: float | None  # between positions; None: continuous (HTML ``step="any"``, ipywidgets' default)
    default: float  # starting value, in the value's own units (β, not log₁₀ β)
    log10: bool = False  # positions are log₁₀ of the value: the β range spans decades

    def position(self, value: float) -> float:
        """Where ``value`` sits on the slider: log₁₀ of it on a log slider, else the value."""
        return math.log10(value) if self.log10 else value


@dataclass(frozen=True)
class ExplorerControls:
    """The controls of both schedule explorers, for the book's MNIST digits."""

    kind: str = "linear"  # the schedule shown bold at first, one of SCHEDULE_KINDS
    T: Slider = Slider(10, 2000, 1, 1000)  # number of diffusion steps
    t: Slider = Slider(1, None, 1, 250)  # the paper's timestep, 1 … T
    beta_start: Slider = Slider(-5.0, -1.0, None, 1e-4, log10=True)  # β₁ of the linear schedule
    beta_end: Slider = Slider(-3.0, -0.05, None, 0.02, log10=True)  # β_T of the linear schedule


EXPLORER_CONTROLS = ExplorerControls()


def explorer_schedules(kind: str, T: int, beta_start: float, beta_end: float) -> dict[str, Schedule]:
    """The three schedules at length T; the β range applies to the linear one."""
    if not 0 < beta_start < 1 or not 0 < beta_end < 1:
        raise ValueError(f"the β range must lie in (0, 1), got {beta_start}, {beta_end}")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")
    return {
        k: make_schedule(k, T, **({"beta_start": beta_start, "beta_end": beta_end} if k == "linear" else {}))
        for k in SCHEDULE_KINDS
    }


def explorer_figure(
    kind: str,
    T: int,
    beta_start: float,
    beta_end: float,
    t: int,
    image: Tensor,
    noise: Tensor,
    fig=None,
):
    """Draw ᾱ_t and log SNR of all three schedules (``kind`` highlighted) and ``image`` noised at t.

    ``t`` is the paper's timestep, 1 … T (code index t - 1). ``image`` (1, H, W) in [-1, 1] and
    ``noise`` of the same shape are fixed, so moving t changes only the noise level.
    """
    import matplotlib.pyplot as plt

    if not 1 <= t <= T:
        raise ValueError(f"t must lie in [1, T={T}] (the paper's timestep), got {t}")
    schedules = explorer_schedules(kind, T, beta_start, beta_end)
    chosen = schedules[kind]
    ab = chosen.alpha_bars[t - 1].item()
    if fig is None:
        fig = plt.figure(figsize=(10, 3.6))
    fig.clear()
    grid = fig.add_gridspec(2, 7)
    ax_ab, ax_snr = fig.add_subplot(grid[:, 0:2]), fig.add_subplot(grid[:, 2:4])
    ax_img = [fig.add_subplot(grid[r, 4 + c]) for r in range(2) for c in range(3)]
    steps = torch.arange(1, T + 1)
    for k, s in schedules.items():
        style = dict(lw=2.5 if k == kind else 1.2, alpha=1.0 if k == kind else 0.6, label=k)
        ax_ab.plot(steps.numpy(), s.alpha_bars.numpy(), **style)
        ax_snr.plot(steps.numpy(), (s.log_snr / torch.log(torch.tensor(10.0))).numpy(), **style)
    for ax in (ax_ab, ax_snr):
        ax.axvline(t, color="k", lw=0.8, ls="--")
        ax.set_xlabel("t (paper's timestep)")
        ax.grid(alpha=0.3)
    ax_ab.set(title=rf"$\bar\alpha_t$ ({kind}: {ab:.3g} at t={t})", ylabel=r"$\bar\alpha_t$")
    ax_snr.set(title=f"SNR, log scale ({kind}: {ab / (1 - ab):.3g})", ylabel=r"$\log_{10}$ SNR")
    ax_ab.legend(fontsize=8)

    # The same digit and the same ε under each schedule at this t: x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε.
    for col, (k, s) in enumerate(schedules.items()):
        a = s.alpha_bars[t - 1].item()
        xt = a**0.5 * image + (1 - a) ** 0.5 * noise
        ax_img[col].imshow(xt[0].clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        ax_img[col].set_title(f"{k}\nᾱ={a:.2g}", fontsize=8)
        ax_img[3 + col].imshow(xt[0].numpy(), cmap="gray")
        ax_img[3 + col].set_title("rescaled", fontsize=7)
    for ax in ax_img:
        ax.axis("off")
    fig.suptitle(f"{kind} schedule, T={T}: x_t at t={t} (code index {t - 1})", fontsize=10)
    fig.tight_layout()
    return fig


def schedule_explorer(image: Tensor, seed: int = 0):
    """An ipywidgets panel: schedule kind, T, the linear β range, and t; returns the widget."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if image.ndim != 3:
        raise ValueError(f"expected one image (C, H, W) in [-1, 1], got shape {tuple(image.shape)}")
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    c = EXPLORER_CONTROLS
    kind = widgets.Dropdown(options=list(SCHEDULE_KINDS), value=c.kind, description="schedule")
    T = widgets.IntSlider(
        value=c.T.default, min=c.T.min, max=c.T.max, step=c.T.step, description="T", continuous_update=False
    )
    t = widgets.IntSlider(
        value=c.t.default, min=c.t.min, max=T.value, step=c.t.step, description="t", continuous_update=False
    )

    def log_slider(s: Slider, description: str):
        step = {} if s.step is None else {"step": s.step}  # None: ipywidgets' own, 0.1 in log₁₀
        return widgets.FloatLogSlider(value=s.default, base=10, min=s.min, max=s.max, description=description, **step)

    beta_start, beta_end = log_slider(c.beta_start, "β₁ (linear)"), log_slider(c.beta_end, "β_T (linear)")
    out = widgets.Output()

    def redraw(*_):
        t.max = T.value
        with out:
            out.clear_output(wait=True)
            explorer_figure(kind.value, T.value, beta_start.value, beta_end.value, min(t.value, T.value), image, noise)
            plt.show()

    for w in (kind, T, beta_start, beta_end, t):
        w.observe(redraw, names="value")
    panel = widgets.VBox([widgets.HBox([kind, T, t]), widgets.HBox([beta_start, beta_end]), out])
    redraw()
    display(panel)
    return panel
