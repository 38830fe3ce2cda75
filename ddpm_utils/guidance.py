"""Classifier-free guidance (Ho & Salimans 2021): one model, two predictions, extrapolated.

A class-conditional model trained with its label dropped now and then (``TrainConfig.p_uncond``)
predicts both ε_θ(x_t, t, c) and, with the null label ∅, ε_θ(x_t, t, ∅). Guidance samples with

    ε̃ = (1 + w) ε_θ(x_t, t, c) - w ε_θ(x_t, t, ∅)          (Ho & Salimans 2021, Eq. 6)

which, for exact predictors, is the noise predictor of the tilted density p_t(x | c)^{1+w} p_t(x)^{-w}
∝ p_t(x | c) p_t(c | x)^w at every noise level. w = 0 is the plain conditional model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedules import free_to_read


def _null_label(model) -> int:
    config = getattr(model, "config", None)
    n = getattr(config, "num_classes", None) if config is not None else getattr(model, "num_classes", None)
    if n is None:
        raise ValueError("guidance needs a class-conditional model (config.num_classes or num_classes set)")
    return int(n)


class ClassifierFreeGuidance:
    """``model(xt, t, y)`` guided towards ``labels`` with scale ``w``, called as ``guided(xt, t)``.

    Any sampler takes it as its model. Each call makes one forward pass on a batch of 2B — the
    conditional half and the null-label half — and combines them by Ho & Salimans' Eq. 6. The
    combination is affine with weights summing to one, so it is the same whether the model
    predicts ε, x_0 or v: guide the raw output, convert afterwards.
    """

    def __init__(self, model, labels: Tensor | int, w: float):
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise ValueError(f"the guidance scale w must be a finite number ≥ 0, got {w!r}")
        self.model, self.w, self.null = model, float(w), _null_label(model)
        if isinstance(labels, int):
            labels = torch.tensor(labels)
        if labels.dtype.is_floating_point or labels.ndim > 1:
            raise ValueError(f"labels must be an int or integer labels of shape (B,), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if free_to_read(labels) and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.null):
            raise ValueError(f"guidance labels must lie in [0, {self.null - 1}] (not the null label {self.null})")
        self.labels = labels

    def __call__(self, xt: Tensor, t: Tensor) -> Tensor:
        batch = xt.shape[0]
        y = self.labels.to(xt.device).expand(batch) if self.labels.ndim == 0 else self.labels.to(xt.device)
        if y.shape != (batch,):
            raise ValueError(f"{y.shape[0]} guidance labels for a batch of {batch}")
        null = torch.full_like(y, self.null)
        out = self.model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, …)
        cond, uncond = out[:batch], out[batch:]
        return (1 + self.w) * cond - self.w * uncond
