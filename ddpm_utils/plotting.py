"""Figures the notebooks share: image grids and schedule curves (matplotlib, torchvision)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .schedules import Schedule


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """Images in [-1, 1], ``(N, C, H, W)``, tiled into one ``(H', W', C)`` array in [0, 1]."""
    from torchvision.utils import make_grid

    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    grid = make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2, pad_value=1.0)
    return ((grid + 1) / 2).permute(1, 2, 0)


def show_images(images: Tensor, title: str = "", nrow: int = 8, ax=None):
    """Show a grid of images in [-1, 1] with a title; returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.6 + 0.4, (len(images) + nrow - 1) // nrow * 0.6 + 0.6))
    grid = image_grid(images, nrow)
    ax.imshow((grid.squeeze(-1) if grid.shape[-1] == 1 else grid).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    return ax


def plot_schedules(schedules: Sequence[Schedule], labels: Sequence[str] | None = None, axes=None):
    """ᾱ_t and log SNR against the paper's t for several schedules, side by side."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    labels = labels or [f"{s.kind} (T={s.T})" for s in schedules]
    for s, label in zip(schedules, labels):
        t = torch.arange(1, s.T + 1) / s.T
        axes[0].plot(t.numpy(), s.alpha_bars.cpu().numpy(), label=label)
        axes[1].plot(t.numpy(), s.log_snr.cpu().numpy(), label=label)
    axes[0].set(title=r"$\bar\alpha_t$: the signal left in $x_t$", xlabel="t / T", ylabel=r"$\bar\alpha_t$")
    # SNR is a ratio of variances, a pure number: its natural logarithm has no unit.
    axes[1].set(title=r"$\log \mathrm{SNR} = \log \bar\alpha_t - \log(1-\bar\alpha_t)$", xlabel="t / T", ylabel="ln SNR")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    return axes
