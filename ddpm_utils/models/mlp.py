"""Small MLP denoisers for the 1-D and 2-D toy data sets.

:class:`ConcatMLP` is the first lesson's network: x_t, sinusoidal features of t (and a one-hot
class label) side by side in one input vector, then a plain MLP. :class:`MLPDenoiser` is the
residual MLP of the later toy chapters, with a learned time embedding added in every block.

``model(xt, t) -> prediction`` with ``xt`` of shape ``(B, data_dim)`` (or ``(B,)`` when
``data_dim == 1``) and ``t`` the integer timestep index of shape ``(B,)``; the prediction
(ε, x0 or v — the model does not care which) has the shape of ``xt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .embedding import TimeEmbedding, check_labels, check_timestep_batch, sinusoidal_embedding


def _check_points(xt: torch.Tensor, data_dim: int) -> bool:
    """Raise unless ``xt`` is ``(B, data_dim)``, or ``(B,)`` for 1-D data; return whether it is ``(B,)``.

    A ``(B,)`` batch of toy data is treated as ``(B, 1)``, and the model gives ``(B,)`` back.
    """
    flat = xt.ndim == 1 and data_dim == 1
    if not (flat or (xt.ndim == 2 and xt.shape[1] == data_dim)):
        allowed = f"(B, {data_dim}) or (B,)" if data_dim == 1 else f"(B, {data_dim})"
        raise ValueError(f"xt must have shape {allowed} for data_dim={data_dim}, got {tuple(xt.shape)}")
    return flat


@dataclass(frozen=True)
class MLPConfig:
    """Size of an MLP denoiser. The defaults (~134k parameters) learn the 2-D toy mixtures."""

    data_dim: int = 2  # dimension of one data point: 1 or 2 for the toys
    hidden: int = 128  # width of every hidden layer
    depth: int = 3  # number of residual blocks, each of which sees the time embedding
    time_dim: int = 64  # width of the sinusoidal features and of the learned time embedding

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLPConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.time_dim < 2:
            raise ValueError(f"MLPConfig.time_dim must be ≥ 2, got {self.time_dim}")


class ResidualMLPBlock(nn.Module):
    """h + Linear(SiLU(Linear(SiLU(LayerNorm(h))) + W_t·SiLU(emb))) — the MLP twin of the UNet block."""

    def __init__(self, hidden: int, time_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.time_proj = nn.Linear(time_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.time_proj(F.silu(emb))  # (B, hidden)
        return h + self.fc2(F.silu(z))  # (B, hidden)


class MLPDenoiser(nn.Module):
    """Linear in → ``depth`` residual blocks (time embedding added in each) → LayerNorm, SiLU, Linear out."""

    def __init__(self, config: MLPConfig = MLPConfig()):
        super().__init__()
        self.config = config
        self.time_embedding = TimeEmbedding(config.time_dim)
        self.linear_in = nn.Linear(config.data_dim, config.hidden)
        self.blocks = nn.ModuleList(
            ResidualMLPBlock(config.hidden, config.time_dim) for _ in range(config.depth)
        )
        self.norm_out = nn.LayerNorm(config.hidden)
        self.linear_out = nn.Linear(config.hidden, config.data_dim)

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = _check_points(xt, self.config.data_dim)
        check_timestep_batch(t, xt.shape[0])

        h = self.linear_in(xt[:, None] if flat else xt)  # (B, hidden)
        emb = self.time_embedding(t)  # (B, time_dim)
        for block in self.blocks:
            h = block(h, emb)  # (B, hidden)
        out = self.linear_out(F.silu(self.norm_out(h)))  # (B, data_dim)
        return out[:, 0] if flat else out


@dataclass(frozen=True)
class ConcatMLPConfig:
    """Size of a :class:`ConcatMLP`. The defaults (1,057 parameters) are the 1-D first lesson's."""

    data_dim: int = 1  # dimension of one data point
    hidden: int = 24  # width of every hidden layer
    depth: int = 2  # number of hidden layers
    time_features: int = 16  # sinusoidal features of t concatenated to x_t
    max_period: float = 100.0  # longest period of those features, in steps (cover the chain's T)
    num_classes: int | None = None  # class conditioning; label num_classes is the null (guidance) label

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConcatMLPConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.time_features < 2:
            raise ValueError(f"ConcatMLPConfig.time_features must be ≥ 2, got {self.time_features}")
        if not self.max_period > 1:
            raise ValueError(f"ConcatMLPConfig.max_period must be > 1, got {self.max_period}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"ConcatMLPConfig.num_classes must be None or ≥ 1, got {self.num_classes}")


class ConcatMLP(nn.Module):
    """[x_t, sinusoidal(t), one-hot(y)] → (Linear, SiLU) × depth → Linear: the smallest useful denoiser.

    The time features are those of :func:`sinusoidal_embedding` with periods up to
    ``max_period`` steps, fixed, not learned. A class-conditional model (``num_classes`` set) takes
    ``model(xt, t, y)`` with labels in ``[0, num_classes]``, the last being the null label "no
    class" that classifier-free guidance trains with; ``y=None`` means the null label.
    """

    def __init__(self, config: ConcatMLPConfig = ConcatMLPConfig()):
        super().__init__()
        self.config = config
        labels = 0 if config.num_classes is None else config.num_classes + 1
        width = config.data_dim + config.time_features + labels
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.data_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        flat = _check_points(xt, c.data_dim)
        check_timestep_batch(t, xt.shape[0])
        features = [xt[:, None] if flat else xt, sinusoidal_embedding(t, c.time_features, c.max_period)]
        if c.num_classes is not None:
            y = check_labels(y, xt.shape[0], c.num_classes, xt.device)
            features.append(F.one_hot(y, c.num_classes + 1).to(xt.dtype))  # (B, num_classes + 1)
        elif y is not None:
            raise ValueError("y was given but this model is unconditional (config.num_classes is None)")
        out = self.net(torch.cat(features, dim=1).to(xt.dtype))  # (B, data_dim)
        return out[:, 0] if flat else out

