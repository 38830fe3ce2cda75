"""Training losses and the variational bound, in bits per dimension.

The bound of Ho et al. Eq. 5, for a chain of T steps (paper indices):

    L = L_T + Σ_{t=2}^{T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) ‖ N(0, I))                  the prior term
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t))  Gaussian KLs
    L_0     = -log p_θ(x_0 | x_1)                          the discretised decoder

In code indices, the KL for code index t ≥ 1 compares the posterior and the model at code t,
and the decoder uses the model at code index 0. Every function returns per-example values
(shape ``(B,)`` or ``(B, T)``); the caller reduces.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .forward import q_sample, q_step
from .posterior import q_posterior
from .reverse import Model, Variance, p_mean_variance, reverse_variance
from .schedules import Schedule, check_timesteps, extract, free_to_read
from .targets import Target, check_x0_recoverable, training_target

LN2 = math.log(2.0)
Decoder = Literal["discrete", "continuous"]
DECODERS = ("discrete", "continuous")


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch: ``(B, ...)`` → ``(B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1) if x.ndim > 1 else x


def l_simple(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    target: Target = "eps",
) -> Tensor:
    """Per-example simplified loss: the mean squared error of the model's prediction.

    Math: L_simple = E_{t, x_0, ε} ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖² — book Eq. (l-simple),
    Ho et al. Eq. 14. With ``target="x0"`` or ``"v"`` the same regression on that target.
    Averaged over the data dimensions, so the value does not depend on the image size.
    """
    xt = q_sample(schedule, x0, t, noise)
    output = model(xt, t)
    if output.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(output.shape)} for input {tuple(x0.shape)}")
    return mean_flat((output - training_target(schedule, x0, t, noise, target)) ** 2)


def kl_weight(schedule: Schedule, t: Tensor, variance: Variance = "beta_tilde") -> Tensor:
    """λ_t = β_t² / (2 σ_t² α_t (1-ᾱ_t)), shape ``(B,)``: the weight of ‖ε - ε_θ‖² in the KL term.

    Math: L_{t-1} = λ_t ‖ε - ε_θ(x_t, t)‖² + C_t (summed over the D dimensions, in nats) — book
    Eq. (kl-weight), Ho et al. Eq. 12. Only λ_t is returned. C_t = D · KL(N(0, β̃_t) ‖ N(0, σ_t²))
    does not depend on ε_θ: it is 0 for ``variance="beta_tilde"``, and for ``"beta"`` (σ_t² = β_t)
    C_t = D/2 · (log(β_t/β̃_t) + β̃_t/β_t - 1) > 0. Defined for code indices t ≥ 1; index 0 is
    the decoder term L_0. With zero terminal SNR, λ_T = ∞ (α_T = 0: an ε error there is an unbounded
    x_0 error), so index T-1 is refused too.
    """
    check_timesteps(schedule, t)
    if t.numel() and int(t.min()) < 1:
        raise ValueError("kl_weight is defined for code indices t >= 1; t = 0 is the decoder term L_0")
    if t.numel() and schedule.zero_terminal_snr and int(t.max()) == schedule.T - 1:
        raise ValueError(
            f"kl_weight is infinite at ᾱ_t = 0 (zero terminal SNR, code index {schedule.T - 1}): "
            "the ε error there says nothing about x_0"
        )
    betas_t = schedule.betas[t]  # (B,)
    sigma2, _ = reverse_variance(schedule, t, betas_t, variance)
    return schedule.betas[t] ** 2 / (2 * sigma2 * schedule.alphas[t] * schedule.one_minus_alpha_bars[t])


def normal_kl(mean1: Tensor, log_var1: Tensor, mean2: Tensor, log_var2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, var1) ‖ N(mean2, var2)) in nats.

    Math: ½ (log σ₂²/σ₁² + σ₁²/σ₂² + (μ₁-μ₂)²/σ₂² - 1) — book Eq. (gaussian-kl).
    """
    return 0.5 * (log_var2 - log_var1 + torch.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * torch.exp(-log_var2) - 1.0)


def check_decoder_data(x0: Tensor) -> None:
    """Raise a ``ValueError`` unless ``x0`` lies in [-1, 1], the range of the discretised decoder."""
    if x0.numel() and (x0.min() < -1.0 - 1e-6 or x0.max() > 1.0 + 1e-6):
        raise ValueError("the discretised decoder expects data scaled to [-1, 1]")


def discretized_gaussian_log_likelihood(x0: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """Elementwise log-probability of 8-bit data under a Gaussian integrated over each bin.

    Data in [-1, 1] on the grid of 256 levels; bin i spans x ± 1/255, and the two outer bins
    extend to ±∞ (Ho et al. Eq. 13). Uses the exact normal CDF in log space, in float64
    (``torch.special.log_ndtr``), so bins many standard deviations from the mean stay accurate.
    The data range is checked here only for ``x0`` on the CPU (``free_to_read``): on a GPU that read
    would be a sync in every step, so the callers that loop (``train``, :func:`nll_bits_per_dim`,
    :func:`vlb_stratified`) check their data once instead.
    """
    if x0.shape != mean.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but the mean has {tuple(mean.shape)}")
    if free_to_read(x0):
        check_decoder_data(x0)
    x, mu = x0.double(), mean.double()
    inv_std = torch.exp(-0.5 * log_var.double())
    upper = inv_std * (x - mu + 1.0 / 255.0)  # standardised bin edges, (B, ...)
    lower = inv_std * (x - mu - 1.0 / 255.0)
    log_ndtr = torch.special.log_ndtr
    # log(Φ(b) - Φ(a)) = log Φ(b) + log(1 - Φ(a)/Φ(b)), with a < b. For a bin above the mean use
    # the mirror image Φ(-lower) - Φ(-upper), so b ≤ 0 whenever the bin lies in a tail and every
    # term stays accurate far out (float32 Φ is 0 beyond about 5.8σ).
    mirror = lower > 0
    a, b = torch.where(mirror, -upper, lower), torch.where(mirror, -lower, upper)
    log_b = log_ndtr(b)
    gap = (-torch.expm1(log_ndtr(a) - log_b)).clamp(min=torch.finfo(torch.float64).tiny)
    log_mid = log_b + torch.log(gap)
    log_first = log_ndtr(upper)  # P(X < -1 + 1/255), the bin of -1
    log_last = log_ndtr(-lower)  # P(X > 1 - 1/255), the bin of +1
    return torch.where(x < -0.999, log_first, torch.where(x > 0.999, log_last, log_mid)).to(x0.dtype)


def gaussian_log_likelihood(x0: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """Elementwise log-density of x_0 under N(mean, exp(log_var)): the decoder for continuous data.

    Math: log N(x; μ, σ²) = -½ (log 2πσ² + (x - μ)²/σ²). For the toy data sets, which have a
    density; 8-bit images use :func:`discretized_gaussian_log_likelihood` — book Eq. (bits-per-dim).
    """
    if x0.shape != mean.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but the mean has {tuple(mean.shape)}")
    return -0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean) ** 2 * torch.exp(-log_var))


def _check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")


def prior_bpd(schedule: Schedule, x0: Tensor) -> Tensor:
    """L_T in bits per dimension, per example: KL(q(x_T | x_0) ‖ N(0, I)) / (D ln 2).

    It has no parameters; for the linear schedule at T = 1000 it is about 1e-5 bits/dim.
    Computed in float64: for the cosine schedule ᾱ_T ≈ 2e-9, and float32 would round it to 0.
    """
    x = x0.double()
    t = torch.full((x.shape[0],), schedule.T - 1, device=x.device, dtype=torch.long)
    mean = extract(schedule.sqrt_alpha_bars, t, x) * x
    log_var = torch.log(extract(schedule.one_minus_alpha_bars, t, x))
    zeros = torch.zeros_like(x)
    return (mean_flat(normal_kl(mean, log_var, zeros, zeros)) / LN2).to(x0.dtype)


class VLB(NamedTuple):
    """The variational bound, per example, in bits per dimension."""

    total: Tensor  # (B,) prior + Σ KL terms + decoder: an upper bound on -log₂ p(x_0) / D
    prior: Tensor  # (B,) L_T
    decoder: Tensor  # (B,) L_0 = -log p(x_0 | x_1) / (D ln 2)
    kl: Tensor  # (B, T-1) L_{t-1} for code indices t = 1 … T-1 (column t-1)


def vlb_terms(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
    decoder: Decoder = "discrete",
) -> Tensor:
    """Per-example term of the bound at code index ``t``, in bits/dim: KL for t ≥ 1, L_0 for t = 0.

    Math: L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t)) at x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε,
    L_0 = -log p_θ(x_0 | x_1) — book Eq. (bound-terms), Ho et al. Eq. 5. ``decoder="discrete"``
    is the 8-bit decoder of Eq. (decoder); ``"continuous"`` the Gaussian density, for toy data.
    Each value is the term divided by D ln 2: the sum over the D coordinates in bits, per coordinate.
    """
    _check_decoder(decoder)
    xt = q_sample(schedule, x0, t, noise)
    step = p_mean_variance(model, schedule, xt, t, target, variance, clip_x0)
    true = q_posterior(schedule, x0, xt, t)
    kl = mean_flat(normal_kl(true.mean, true.log_variance, step.mean, step.log_variance)) / LN2
    log_likelihood = discretized_gaussian_log_likelihood if decoder == "discrete" else gaussian_log_likelihood
    nll = -mean_flat(log_likelihood(x0, step.mean, step.log_variance)) / LN2
    return torch.where(t == 0, nll, kl)


def _terms_at(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    ts: Tensor,
    target: Target,
    variance: Variance,
    clip_x0: bool,
    max_batch: int,
    generator: torch.Generator | None,
    decoder: Decoder,
    progress: bool = False,
) -> Tensor:
    """The terms of the bound for example i at the code indices ``ts[i]``, in bits/dim: ``(B, K)``.

    Columns are evaluated in chunks, each model call seeing up to ``max_batch`` inputs
    (examples × columns), each term with its own draw of x_t.
    """
    B, K = ts.shape
    per_call = max(1, max_batch // B)
    terms = torch.empty(B, K, device=x0.device, dtype=x0.dtype)
    chunks = range(0, K, per_call)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="bits/dim", unit="chunk")
    for start in chunks:
        cols = ts[:, start : start + per_call]  # (B, k)
        k = cols.shape[1]
        x0_rep = x0.repeat(k, *([1] * (x0.ndim - 1)))  # (k·B, ...): all examples for each column
        t_rep = cols.T.reshape(-1)  # (k·B,) column by column, matching x0_rep
        noise = torch.randn(x0_rep.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        values = vlb_terms(model, schedule, x0_rep, t_rep, noise, target, variance, clip_x0, decoder)
        terms[:, start : start + k] = values.reshape(k, B).T
    return terms


@torch.no_grad()
def nll_bits_per_dim(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
    max_batch: int = 1024,
    generator: torch.Generator | None = None,
    progress: bool = False,
    decoder: Decoder = "discrete",
) -> VLB:
    """Evaluate all T terms of the bound for each example of ``x0`` (8-bit data in [-1, 1], or
    any real data with ``decoder="continuous"``).

    Each term uses one draw of x_t ~ q(x_t | x_0), so the total is an unbiased, single-sample
    estimate of the bound. Timesteps are batched: each model call sees up to ``max_batch``
    inputs (examples × timesteps).
    """
    _check_decoder(decoder)
    check_x0_recoverable(schedule, target, schedule.T - 1)  # every t is visited
    if decoder == "discrete":
        check_decoder_data(x0)  # once here, not in every chunk (a sync each on a GPU)
    B, T = x0.shape[0], schedule.T
    every_t = torch.arange(T, device=x0.device).expand(B, T)  # (B, T): all T terms for every example
    terms = _terms_at(model, schedule, x0, every_t, target, variance, clip_x0, max_batch, generator, decoder, progress)
    prior = prior_bpd(schedule, x0)
    return VLB(prior + terms.sum(dim=1), prior, terms[:, 0], terms[:, 1:])


class BoundEstimate(NamedTuple):
    """A stratified estimate of the bound per example, in bits/dim, and the standard error of the mean."""

    total: Tensor  # (B,) prior + decoder + estimated Σ KL terms
    prior: Tensor  # (B,) L_T, exact
    decoder: Tensor  # (B,) L_0, one draw of x_1
    kl: Tensor  # (B,) estimate of Σ_{t=2}^{T} L_{t-1}
    standard_error: float  # of total.mean(), from the spread over the B examples


@torch.no_grad()
def vlb_stratified(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    strata: int,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    clip_x0: bool = False,
    max_batch: int = 1024,
    generator: torch.Generator | None = None,
    decoder: Decoder = "discrete",
) -> BoundEstimate:
    """The bound from ``strata`` timesteps per example instead of all T - 1 KL terms.

    The code indices 1 … T-1 are cut into ``strata`` contiguous blocks of n_k steps; each example
    draws one t uniformly inside every block, with its own x_t, and the block contributes
    n_k · L_{t-1}. Each contribution is unbiased for the block's sum, so the total is unbiased for
    the bound, and every example's estimate is independent of the others': the standard error of
    the mean over examples is their standard deviation / √B. L_T is exact; L_0 uses one x_1.
    """
    _check_decoder(decoder)
    check_x0_recoverable(schedule, target, schedule.T - 1)  # the last block ends at T-1
    if decoder == "discrete":
        check_decoder_data(x0)  # once here, not in every chunk (a sync each on a GPU)
    B, T = x0.shape[0], schedule.T
    if not 1 <= strata <= T - 1:
        raise ValueError(f"strata must lie in [1, T - 1] = [1, {T - 1}], got {strata}")
    if B < 2:
        raise ValueError("the standard error needs at least 2 examples")
    device = x0.device
    edges = torch.linspace(1, T, strata + 1, dtype=torch.float64).round().long()  # block k: [edges[k], edges[k+1])
    starts, sizes = edges[:-1].to(device), edges.diff().to(device)  # (S,)
    u = torch.rand(B, strata, generator=generator, device=device, dtype=torch.float64)
    ts = starts + (u * sizes).long().clamp(max=sizes - 1)  # (B, S) one t per block per example
    ts = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=device), ts], dim=1)  # column 0: L_0
    terms = _terms_at(model, schedule, x0, ts, target, variance, clip_x0, max_batch, generator, decoder)
    prior = prior_bpd(schedule, x0)
    kl = (terms[:, 1:] * sizes.to(terms.dtype)).sum(dim=1)
    total = prior + terms[:, 0] + kl
    return BoundEstimate(total, prior, terms[:, 0], kl, float(total.double().std() / math.sqrt(B)))


@torch.no_grad()
def elbo_chain_form(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    target: Target = "eps",
    variance: Variance = "beta_tilde",
    generator: torch.Generator | None = None,
) -> Tensor:
    """A one-sample estimate of the bound in its first form, per example, in bits/dim.

    Math: L = E_{q(x_{1:T} | x_0)}[-log p(x_T) - Σ_{t=1}^{T} log p_θ(x_{t-1} | x_t) / q(x_t | x_{t-1})]
    — book Eq. (elbo), Ho et al. Eq. 3. Runs one forward chain per example, one step at a time,
    and scores every transition under both processes; no Bayes' rule, no closed-form KL. The t = 1
    step uses the Gaussian density (continuous data). Its expectation is the bound that
    :func:`nll_bits_per_dim` computes from the rearranged terms, with a larger variance.
    """
    check_x0_recoverable(schedule, target, schedule.T - 1)  # every step is scored
    x = x0
    total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    sqrt_alphas, log_betas = schedule.alphas.sqrt(), torch.log(schedule.betas)  # q(x_t | x_{t-1}), Eq. (forward-step)
    for k in range(schedule.T):  # code index k: the step between x_k and x_{k+1} in the paper's numbering
        t = torch.full((x0.shape[0],), k, device=x0.device, dtype=torch.long)
        x_next = q_step(schedule, x, t, generator=generator)
        log_q = gaussian_log_likelihood(x_next, extract(sqrt_alphas, t, x) * x, extract(log_betas, t, x))
        step = p_mean_variance(model, schedule, x_next, t, target, variance)
        log_p = gaussian_log_likelihood(x, step.mean, step.log_variance)
        total += (log_q - log_p).reshape(x0.shape[0], -1).double().sum(dim=1)
        x = x_next
    zeros = torch.zeros_like(x)
    total -= gaussian_log_likelihood(x, zeros, zeros).reshape(x0.shape[0], -1).double().sum(dim=1)
    dims = x0[0].numel()
    return (total / (dims * LN2)).to(x0.dtype)
