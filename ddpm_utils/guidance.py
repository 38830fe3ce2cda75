"""Classifier-free guidance (Ho & Salimans 2021): one model, two predictions, extrapolated.

A class-conditional model trained with its label dropped now and then (``TrainConfig.p_uncond``)
predicts both ε_θ(x_t, t, c) and, with the null label ∅, ε_θ(x_t, t, ∅). Guidance samples with

    ε̃ = (1 + w) ε_θ(x_t, t, c) - w ε_θ(x_t, t, ∅)          (Ho & Salimans 2021, Eq. 6; book Eq. cfg-w)
      = ε_θ(x_t, t, ∅) + s (ε_θ(x_t, t, c) - ε_θ(x_t, t, ∅)),  s = 1 + w   (diffusers' guidance_scale)

Two conventions name the same thing: Ho & Salimans' **w** (w = 0 is the plain conditional model)
and the **guidance scale** s = 1 + w of GLIDE, diffusers and most libraries (s = 1 is the plain
conditional model). Every function here takes either, by name, never both.

For exact predictors ε̃ is, at every noise level, the noise predictor of the tilted density
p_t(x | c)^{1+w} p_t(x)^{-w} ∝ p_t(x | c) p_t(c | x)^w (book Eq. cfg-tilt). It is not the noise
predictor of the noised version of the tilted data distribution p_0(x | c)^{1+w} p_0(x)^{-w}, so a
guided sampler does not draw that distribution exactly (book chapter 6).
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


def guidance_weight(w: float | None = None, guidance_scale: float | None = None) -> float:
    """Ho & Salimans' w from either convention: ``w`` itself, or ``guidance_scale`` s = 1 + w.

    Exactly one of the two must be given; w must be finite and ≥ 0 (s ≥ 1). w = 0 (s = 1) is the
    conditional model without guidance.
    """
    if (w is None) == (guidance_scale is None):
        raise ValueError("give exactly one of w (Ho & Salimans: 0 = no guidance) and guidance_scale "
                         f"(s = 1 + w: 1 = no guidance), got w={w!r}, guidance_scale={guidance_scale!r}")
    if w is None:
        if not (isinstance(guidance_scale, (int, float)) and math.isfinite(guidance_scale) and guidance_scale >= 1):
            raise ValueError(f"the guidance scale s = 1 + w must be a finite number ≥ 1, got {guidance_scale!r}")
        return float(guidance_scale) - 1.0
    if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
        raise ValueError(f"the guidance weight w must be a finite number ≥ 0 (guidance scale 1 + w ≥ 1), got {w!r}")
    return float(w)


class ClassifierFreeGuidance:
    """``model(xt, t, y)`` guided towards ``labels``, called as ``guided(xt, t)``.

    Give the strength as Ho & Salimans' ``w`` (positional or by name) or as ``guidance_scale``
    s = 1 + w, not both. Any sampler takes the result as its model. With w > 0 each call makes one
    forward pass on a batch of 2B — the conditional half and the null-label half — and combines
    them by Eq. (cfg-w); with w = 0 it makes one pass of B with the labels, as the combination is
    then the conditional prediction. The combination is affine with weights summing to one, so it
    is the same whether the model predicts ε, x_0 or v: guide the raw output, convert afterwards.
    """

    def __init__(self, model, labels: Tensor | int, w: float | None = None, *, guidance_scale: float | None = None):
        self.model, self.w, self.null = model, guidance_weight(w, guidance_scale), _null_label(model)
        if isinstance(labels, int):
            labels = torch.tensor(labels)
        if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim > 1:
            raise ValueError(f"labels must be an int or integer labels of shape (B,), got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
        if free_to_read(labels) and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.null):
            raise ValueError(f"guidance labels must lie in [0, {self.null - 1}] (not the null label {self.null})")
        self.labels = labels

    @property
    def guidance_scale(self) -> float:
        """s = 1 + w, the same strength in the convention of diffusers and GLIDE."""
        return 1.0 + self.w

    def __call__(self, xt: Tensor, t: Tensor) -> Tensor:
        batch = xt.shape[0]
        y = self.labels.to(xt.device).expand(batch) if self.labels.ndim == 0 else self.labels.to(xt.device)
        if y.shape != (batch,):
            raise ValueError(f"{y.shape[0]} guidance labels for a batch of {batch}")
        if self.w == 0:
            return self.model(xt, t, y)
        null = torch.full_like(y, self.null)
        out = self.model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, …)
        cond, uncond = out[:batch], out[batch:]
        return (1 + self.w) * cond - self.w * uncond


def guided(model, labels: Tensor | int | None = None, w: float | None = None, guidance_scale: float | None = None):
    """The model a sampler calls: ``model`` itself without ``labels``, else the guided model.

    This is how the samplers read their ``labels``, ``w`` and ``guidance_scale`` arguments:
    labels with neither strength sample the conditional model (w = 0, one pass per step); a
    strength without labels is an error, since there is nothing to guide towards.
    """
    if labels is None:
        if w is not None or guidance_scale is not None:
            raise ValueError("w or guidance_scale was given without labels: guidance needs the labels to guide towards")
        return model
    if w is None and guidance_scale is None:
        w = 0.0
    return ClassifierFreeGuidance(model, labels, w, guidance_scale=guidance_scale)
