"""How training draws the timestep t: uniformly, or by importance sampling.

The bound is a sum over t, Σ_t L_t, and training estimates it from a few t per batch. Any
distribution p_t with p_t > 0 gives an unbiased estimate, E_{t~p}[L_t / p_t] = Σ_t L_t — book
Eq. (importance-t). Uniform p_t = 1/T is Ho et al.'s Algorithm 1. The estimate's variance is
smallest for p_t ∝ √E[L_t²] (Nichol & Dhariwal 2021, Sec. 3.3), which :class:`ImportanceSampler`
learns from the losses it sees.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ImportanceSampler:
    """Draws code indices t with p_t ∝ √E[L_t²], learned from the losses of past batches.

    Nichol & Dhariwal keep the last ten losses of every t and sample uniformly until each t has
    ten. This class keeps an exponential moving average of L_t² per t instead (decay ``decay``
    per batch in which t occurs), which needs no per-t Python bookkeeping and stays on the
    device: nothing here reads a tensor back to the host. Sampling is uniform until every t has
    been seen ``warmup`` times, and a fraction ``uniform_mix`` of the probability always stays
    uniform, so no p_t reaches 0 and the estimate stays unbiased.
    """

    def __init__(self, T: int, device: torch.device | str = "cpu", warmup: int = 10,
                 decay: float = 0.9, uniform_mix: float = 1e-3):
        if T < 1 or warmup < 0:
            raise ValueError(f"need T >= 1 and warmup >= 0, got T={T}, warmup={warmup}")
        if not 0.0 <= decay < 1.0 or not 0.0 < uniform_mix <= 1.0:
            raise ValueError(f"need decay in [0, 1) and uniform_mix in (0, 1], got {decay}, {uniform_mix}")
        self.T, self.warmup, self.decay, self.uniform_mix = T, warmup, decay, uniform_mix
        self.second_moment = torch.zeros(T, dtype=torch.float64, device=device)  # EMA of L_t²
        self.seen = torch.zeros(T, dtype=torch.long, device=device)  # how often each t occurred

    def probabilities(self) -> Tensor:
        """p_t, shape ``(T,)``, summing to 1: uniform until the warm-up is over."""
        uniform = torch.full_like(self.second_moment, 1.0 / self.T)
        rms = self.second_moment.sqrt()
        learned = rms / rms.sum().clamp(min=torch.finfo(rms.dtype).tiny)
        learned = (1.0 - self.uniform_mix) * learned + self.uniform_mix * uniform
        ready = (self.seen >= self.warmup).all() & (rms.sum() > 0)
        return torch.where(ready, learned, uniform)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``batch_size`` code indices t and the weights 1/(T p_t), both ``(B,)``.

        Multiplying each example's loss by its weight makes the batch mean an unbiased estimate
        of the mean over t, (1/T) Σ_t L_t, the quantity uniform sampling estimates.
        """
        p = self.probabilities()
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        return t, (1.0 / (self.T * p[t])).float()

    @torch.no_grad()
    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record the per-example losses ``losses`` (B,) observed at code indices ``t`` (B,)."""
        if t.shape != losses.shape or t.ndim != 1:
            raise ValueError(f"t and losses must both have shape (B,), got {tuple(t.shape)} and {tuple(losses.shape)}")
        total = torch.zeros_like(self.second_moment).index_add_(0, t, losses.detach().double() ** 2)
        count = torch.zeros_like(self.seen).index_add_(0, t, torch.ones_like(t))
        batch_mean = total / count.clamp(min=1)
        # A t seen for the first time takes its batch mean; afterwards the average moves by 1 - decay.
        decay = torch.where(self.seen > 0, torch.full_like(batch_mean, self.decay), torch.zeros_like(batch_mean))
        updated = decay * self.second_moment + (1 - decay) * batch_mean
        self.second_moment = torch.where(count > 0, updated, self.second_moment)
        self.seen += count
