"""Reference values computed the slow, obvious way, independently of ddpm_utils.

Plain Python floats (float64) and the standard library / scipy only: no torch, no package code.
Timesteps follow the code convention: list index t is the paper's t + 1.
"""

import math

from scipy.special import expit


def loop_alpha_bars(betas):
    """ᾱ at every code index, by a plain Python loop in float64: ᾱ_t = ∏_{s≤t} (1 - β_s)."""
    out, running = [], 1.0
    for beta in betas:
        running *= 1.0 - float(beta)
        out.append(running)
    return out


def loop_coefficients(betas):
    """β, α, ᾱ and ᾱ_{t-1} (with ᾱ_0 = 1) at every code index, as lists of floats, ᾱ by the loop above."""
    beta = [float(b) for b in betas]
    abar = loop_alpha_bars(beta)
    return beta, [1.0 - b for b in beta], abar, [1.0] + abar[:-1]


def linear_betas(T, beta_1=1e-4, beta_T=0.02):
    """Ho et al. Sec. 4, book Eq. (linear-schedule): β_t = β_1 + (t-1)/(T-1) (β_T - β_1), t = 1..T."""
    if T == 1:
        return [beta_1]
    return [beta_1 + (beta_T - beta_1) * i / (T - 1) for i in range(T)]


def cosine_alpha_bar(tau, s=0.008):
    """Book Eq. (cosine-schedule), Nichol & Dhariwal Eq. 17: ᾱ(τ) = f(τ)/f(0), f(τ) = cos²((τ+s)/(1+s)·π/2)."""

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return f(tau) / f(0.0)


def sigmoid_alpha_bar(tau, start=-3.0, end=3.0, temp=1.0):
    """Book Eq. (sigmoid-schedule), Chen 2023 Alg. 1, with σ = scipy.special.expit:
    ᾱ(τ) = (σ(end/temp) - σ((τ(end-start)+start)/temp)) / (σ(end/temp) - σ(start/temp))."""
    v_end, v_start = float(expit(end / temp)), float(expit(start / temp))
    return (v_end - float(expit((tau * (end - start) + start) / temp))) / (v_end - v_start)


def betas_from_alpha_bar(alpha_bar, T, max_beta=0.999):
    """β_t = min(1 - ᾱ(t/T)/ᾱ((t-1)/T), max_beta), t = 1..T: the discretisation used by the cosine
    and sigmoid schedules. After a clip, ᾱ must be recomputed as the running product of (1 - β)."""
    return [min(1.0 - alpha_bar(t / T) / alpha_bar((t - 1) / T), max_beta) for t in range(1, T + 1)]
