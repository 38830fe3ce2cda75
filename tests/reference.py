"""Reference values computed the slow, obvious way, independently of ddpm_utils."""


def loop_alpha_bars(betas):
    """ᾱ at every code index, by a plain Python loop in float64: ᾱ_t = ∏_{s≤t} (1 - β_s)."""
    out, running = [], 1.0
    for beta in betas:
        running *= 1.0 - beta
        out.append(running)
    return out
