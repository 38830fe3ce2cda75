"""The schedule explorer: sliders for a noise schedule, and what it does to ᾱ_t, SNR and a digit.

:func:`explorer_figure` draws one state of the explorer (usable, and tested, without widgets);
:func:`schedule_explorer` wires it to ipywidgets (works with ipywidgets 7 and 8).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .schedules import SCHEDULE_KINDS, Schedule, make_schedule


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
    kind = widgets.Dropdown(options=list(SCHEDULE_KINDS), value="linear", description="schedule")
    T = widgets.IntSlider(value=1000, min=10, max=2000, step=10, description="T", continuous_update=False)
    beta_start = widgets.FloatLogSlider(value=1e-4, base=10, min=-5, max=-1, description="β₁ (linear)")
    beta_end = widgets.FloatLogSlider(value=0.02, base=10, min=-3, max=-0.05, description="β_T (linear)")
    t = widgets.IntSlider(value=250, min=1, max=1000, description="t", continuous_update=False)
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
