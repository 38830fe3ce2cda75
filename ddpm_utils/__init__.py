"""ddpm_utils: the small, tested package behind the book *DDPM from Scratch*.

One module per idea of the book: ``schedules`` (β_t and every coefficient built from it, zero
terminal SNR), ``forward`` (q(x_t | x_0)), ``posterior`` (q(x_{t-1} | x_t, x_0)), ``targets`` (ε, x_0,
v, the table of converters between them and the weights between their errors), ``reverse``
(p_θ(x_{t-1} | x_t)), ``losses`` (L_simple and the bound in bits/dim), ``timesteps`` (uniform and
importance-sampled t), ``samplers`` (DDPM, DDIM, DPM-Solver++(2M), one signature, listed in
``SAMPLERS``), ``guidance`` (classifier-free guidance), ``distributions`` (Gaussian mixtures),
``oracle`` (the exact predictor for them), ``models``, ``training``, ``recipe`` (``plan_run``: from a data
set and a budget to a training and sampling plan), ``data`` (the book's data sets),
``metrics`` (a package: ``distances`` between sample sets, the MNIST ``classifier`` and the
``frechet`` distance), ``run`` (run presets), ``plotting``, and the schedule explorers ``widgets``
(ipywidgets, needs a kernel) and ``static_explorer`` (HTML and JavaScript, for the website).

Timestep convention
-------------------
The code's index ``t`` runs over ``0, …, T-1`` and is the paper's timestep ``t + 1``:
``alpha_bars[t]`` is ᾱ_{t+1}, ``alpha_bars_prev[0] = 1`` is ᾱ_0, and code index 0 is the last
reverse step, the one that produces x_0. Every ``t`` argument is a long tensor of shape ``(B,)``.

Models
------
A model is any callable ``model(xt, t) -> prediction`` with the prediction shaped like ``xt``.

Importing this package imports torch and nothing heavier; matplotlib, torchvision, tqdm and
ipywidgets are imported by the functions that use them.
"""

from .distributions import GaussianMixture
from .forward import Gaussian, q_mean_variance, q_sample, q_step
from .losses import (
    VLB,
    BoundEstimate,
    discretized_gaussian_log_likelihood,
    elbo_chain_form,
    gaussian_log_likelihood,
    kl_weight,
    l_simple,
    mean_flat,
    nll_bits_per_dim,
    normal_kl,
    prior_bpd,
    vlb_stratified,
    vlb_terms,
)
from .guidance import ClassifierFreeGuidance, guidance_weight, guided
from .oracle import GaussianBound, LabelledMixtureOracle, MixtureOracle, gaussian_data_bound
from .posterior import Posterior, q_posterior
from .recipe import RunPlan, plan_run
from .reverse import ReverseStep, interpolated_log_variance, p_mean_variance, reverse_variance
from .samplers import SAMPLERS, SamplerStep, ddim_sample, ddpm_sample, dpmpp_2m_sample, respace, timestep_subsequence
from .schedules import (
    Schedule,
    append_dims,
    check_timesteps,
    extract,
    free_to_read,
    linear_betas_reaching,
    make_schedule,
    rescale_zero_terminal_snr,
    schedule_from_betas,
)
from .targets import (
    CONVERTERS,
    TARGETS,
    Prediction,
    check_x0_recoverable,
    eps_to_x0,
    split_prediction,
    training_target,
    v_to_eps,
    v_to_x0,
    x0_eps_to_v,
    x0_error_weight,
    x0_to_eps,
)
from .timesteps import ImportanceSampler

__version__ = "0.1.0"
