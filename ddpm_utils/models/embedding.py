"""Timestep embeddings: how a network is told which noise level it is looking at.

Timestep convention (the whole book): the models take ``t`` as an integer tensor of shape ``(B,)``
holding the code's index in {0, …, T-1}. They never see T; they only embed the number they are given.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..schedules import free_to_read


def check_timestep_batch(t: torch.Tensor, batch: int) -> None:
    """Raise ``ValueError`` unless ``t`` is an integer tensor of shape ``(batch,)``.

    Shared by every model so that a float ``t`` (a common slip: ``t / T``) or a ``(B, 1)`` ``t`` fails
    at the model's door rather than deep inside a broadcast.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be an integer torch.Tensor of shape ({batch},), got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"t must hold integer timestep indices (e.g. torch.long), got dtype {t.dtype}")
    if tuple(t.shape) != (batch,):
        raise ValueError(f"t must have shape ({batch},) to match the batch, got {tuple(t.shape)}")


def check_labels(y: torch.Tensor | None, batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Labels ``y`` of shape ``(B,)`` in ``[0, num_classes]``, the last being the null label; ``None`` → all null.

    Shared by the class-conditional models. The range is read only for labels on the CPU
    (``free_to_read``): this runs at every step, and on a GPU each read would be a sync. There a
    label outside the range fails in the embedding lookup instead, and ``train`` checks its labels
    once, before the loop.
    """
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if (not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype.is_complex
            or y.dtype == torch.bool or tuple(y.shape) != (batch,)):
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be integer labels of shape ({batch},), got {got}")
    if free_to_read(y) and not torch.compiler.is_compiling() and bool(((y < 0) | (y > num_classes)).any()):
        raise ValueError(f"y must lie in [0, {num_classes}] ({num_classes} = null label), "
                         f"got min {int(y.min())} max {int(y.max())}")
    return y


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer sinusoidal embedding of the timesteps ``t`` of shape ``(B,)`` → ``(B, dim)``.

    Math: with half = ⌊dim/2⌋ and ω_i = max_period^(−i/half), i = 0, …, half−1,
        emb(t) = [sin(t ω_0), …, sin(t ω_{half−1}), cos(t ω_0), …, cos(t ω_{half−1})]
    — Vaswani et al. §3.5, used for the timestep by Ho et al. Appendix B. (Ho et al.'s code divides by
    half−1 instead of half; the difference is immaterial, we follow improved-diffusion.)
    An odd ``dim`` gets a final column of zeros. The result is float32 whatever the dtype of ``t``.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (one sin and one cos column), got {dim}")
    half = dim // 2
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    omega = torch.exp(-math.log(max_period) * i / half)  # (half,)
    angles = t.to(torch.float32)[:, None] * omega[None, :]  # (B, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, 2·half)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))  # (B, dim): zero column at the end
    return emb


class TimeEmbedding(nn.Module):
    """sinusoidal(t) → Linear → SiLU → Linear: a learned embedding of shape ``(B, dim)``.

    ``sinusoidal_dim`` (default ``dim``) is the width of the fixed sinusoidal features; Ho et al.'s
    UNet uses ``sinusoidal_dim = ch`` and ``dim = 4·ch``.
    """

    def __init__(self, dim: int, sinusoidal_dim: int | None = None, max_period: float = 10_000.0):
        super().__init__()
        self.sinusoidal_dim = sinusoidal_dim or dim
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(self.sinusoidal_dim, dim),
            nn.SiLU(),
            nn.Linear(dim, dim),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.sinusoidal_dim, self.max_period)  # (B, sinusoidal_dim)
        return self.mlp(emb)  # (B, dim)
