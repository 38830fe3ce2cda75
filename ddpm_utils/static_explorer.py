"""A schedule explorer that needs no kernel: HTML and JavaScript, stored in the notebook's output.

The ipywidgets explorer (:mod:`ddpm_utils.widgets`) redraws through a running kernel, so on the
static website it is dead. :func:`static_explorer_html` instead returns one self-contained
``<div>``: the digit and a fixed ε as JSON in its ``data-`` attributes, ``<input type=range>``/
``<select>`` controls, a ``<canvas>`` and an inline ``<script>`` that recomputes everything in the
browser. No external script, stylesheet or network access; two explorers on one page do not clash
(two with the same arguments take different ``instance`` numbers).
The figure is 900×320 px and scales down to the page's column (to 620 px, then it scrolls
sideways). Jupyter Book's column is narrower than 900 px: tag the notebook cell ``full-width``
to give the explorer its full size there.

The HTML, CSS and JavaScript are package data, files in ``ddpm_utils/static/`` (pyproject.toml
ships them): ``explorer.html`` is the ``<div>`` with ``__NAME__`` placeholders, ``explorer.css``
its styles, ``explorer.js`` its script, and ``schedules.js`` the schedules, recomputed in
JavaScript exactly as :mod:`ddpm_utils.schedules` defines them. That last file is also
:data:`SCHEDULE_JS`, so the tests can run it in node and compare it with
:func:`~ddpm_utils.schedules.make_schedule` (tests/test_static_explorer.py). Python formats
no value but the ``<div>``'s id into the JavaScript: the script reads the digit, ε and starting
β range from the ``<div>``'s ``data-`` attributes, and the controls' ranges are the sliders' own
attributes, taken from :data:`ddpm_utils.widgets.EXPLORER_CONTROLS` like those of the ipywidgets
explorer.

What it draws, for the paper's timestep t = 1 … T (code index t - 1):

* ᾱ_t of the three schedules, the chosen one bold, with a marker at t;
* log₁₀ SNR = log₁₀(ᾱ_t / (1 - ᾱ_t)), likewise;
* x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε for the chosen schedule (Ho et al. Eq. 4), pixels in [-1, 1]
  shown as grey, clipped.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import re
from importlib import resources

import torch
from torch import Tensor

from .schedules import SCHEDULE_KINDS
from .widgets import EXPLORER_CONTROLS, Slider

IMAGE_SHAPE = (1, 28, 28)  # one MNIST digit (C, H, W), pixels in [-1, 1]

def _static_file(name: str) -> str:
    """The text of ``ddpm_utils/static/<name>``, read through importlib.resources (works from a wheel)."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


# The schedules of ddpm_utils/schedules.py, in float64 like the Python; tests/test_static_explorer.py
# runs exactly this code in node.
SCHEDULE_JS = _static_file("schedules.js")
_EXPLORER_JS = _static_file("explorer.js")  # draws the figure, wires the controls; holds __SCHEDULE_JS__, __ID__
_EXPLORER_CSS = _static_file("explorer.css")  # scoped to the explorer's id: holds __ID__
_EXPLORER_HTML = _static_file("explorer.html").rstrip("\n")  # the <div>, with __NAME__ placeholders
_PLACEHOLDER = re.compile(r"__(\w+?)__")


def _check_log_slider(name: str, value: float, slider: Slider) -> None:
    lo, hi = 10**slider.min, 10**slider.max
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo:.3g}, {hi:.3g}] (the slider's range), got {value!r}")


def _attribute(text: str) -> str:
    """``text`` escaped for a double-quoted HTML attribute."""
    return html_lib.escape(text, quote=True)


def _slider_attributes(prefix: str, slider: Slider) -> dict[str, str]:
    """The placeholders ``__<prefix>_MIN__``, ``_MAX__``, ``_STEP__`` of one ``<input type=range>``."""
    fill = {f"{prefix}_MIN": str(slider.min), f"{prefix}_STEP": "any" if slider.step is None else str(slider.step)}
    if slider.max is not None:
        fill[f"{prefix}_MAX"] = str(slider.max)
    return fill


def _as_json_list(x: Tensor) -> str:
    """A flat JSON array of ``x``'s values rounded to 3 decimals, without trailing zeros."""

    def short(v: float) -> str:
        text = f"{v:.3f}".rstrip("0").rstrip(".")  # "-0.500" → "-0.5", "1.000" → "1"
        return "0" if text == "-0" else text

    return "[" + ",".join(short(v) for v in x.reshape(-1).tolist()) + "]"


def static_explorer_html(
    image: Tensor,
    noise: Tensor | None = None,
    seed: int = 0,
    T: int = EXPLORER_CONTROLS.T.default,
    t: int = EXPLORER_CONTROLS.t.default,
    kind: str = EXPLORER_CONTROLS.kind,
    beta_start: float = EXPLORER_CONTROLS.beta_start.default,
    beta_end: float = EXPLORER_CONTROLS.beta_end.default,
    instance: int = 0,
) -> str:
    """The HTML of a schedule explorer that runs in the browser, with no kernel.

    Args:
        image: one digit x_0, shape ``(1, 28, 28)``, pixels in [-1, 1].
        noise: the fixed ε, same shape; by default drawn from N(0, I) with ``seed`` (the same
            ε as :func:`ddpm_utils.widgets.schedule_explorer` draws with that seed).
        T, t, kind, beta_start, beta_end: the controls' starting values; ``t`` is the paper's
            timestep 1 … T, and the β range (β₁, β_T) applies to the linear schedule. Their
            defaults and ranges are :data:`~ddpm_utils.widgets.EXPLORER_CONTROLS`.
        instance: tells apart explorers with the same arguments on one page (give the second 1).

    Returns:
        One ``<div>`` with its own id, its own ``<style>`` and an inline ``<script>``. The id is a
        digest of the arguments (``instance`` included): explorers that differ in any of them
        have different ids, and re-running a notebook gives the same output.

    Raises:
        ValueError: for an image or noise of another shape, pixels outside [-1, 1], or a
            setting outside its slider's range.
    """
    if not isinstance(image, Tensor) or tuple(image.shape) != IMAGE_SHAPE:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected one digit of shape {IMAGE_SHAPE} in [-1, 1], got {shape}")
    image = image.detach().cpu().double()
    if not torch.isfinite(image).all() or image.abs().max() > 1 + 1e-6:
        raise ValueError("image pixels must be finite and lie in [-1, 1]")
    if noise is None:
        noise = torch.randn(IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed))
    elif tuple(noise.shape) != IMAGE_SHAPE:
        raise ValueError(f"noise must have the image's shape {IMAGE_SHAPE}, got {tuple(noise.shape)}")
    noise = noise.detach().cpu().double()
    if not torch.isfinite(noise).all():
        raise ValueError("noise must be finite")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")
    controls = EXPLORER_CONTROLS
    if isinstance(T, bool) or not isinstance(T, int) or not controls.T.min <= T <= controls.T.max:
        raise ValueError(f"T must be an integer in [{controls.T.min}, {controls.T.max}], got {T!r}")
    if isinstance(t, bool) or not isinstance(t, int) or not controls.t.min <= t <= T:
        raise ValueError(f"t must lie in [{controls.t.min}, T={T}] (the paper's timestep), got {t!r}")
    _check_log_slider("beta_start", beta_start, controls.beta_start)
    _check_log_slider("beta_end", beta_end, controls.beta_end)

    options = "".join(
        f'<option value="{k}"{" selected" if k == kind else ""}>{k}</option>' for k in SCHEDULE_KINDS
    )
    fill = {
        # The data the script reads from the <div>: pixels (28·28, row-major) and the β range.
        "IMAGE": _attribute(_as_json_list(image)),
        "NOISE": _attribute(_as_json_list(noise)),
        "BETA1": _attribute(json.dumps(float(beta_start))),
        "BETAT": _attribute(json.dumps(float(beta_end))),
        # The controls: ranges and steps from the table, starting values from the arguments.
        "OPTIONS": options,
        **_slider_attributes("T", controls.T),
        **_slider_attributes("t", controls.t),  # its max is T
        **_slider_attributes("BETA1", controls.beta_start),
        **_slider_attributes("BETAT", controls.beta_end),
        "T": str(T),
        "t": str(t),
        "BETA1_LOG10": repr(controls.beta_start.position(beta_start)),
        "BETAT_LOG10": repr(controls.beta_end.position(beta_end)),
        "CSS": _EXPLORER_CSS,
        "SCRIPT": _EXPLORER_JS.replace("__SCHEDULE_JS__", SCHEDULE_JS.strip()),
        "ID": "__ID__",  # filled below, from a digest of everything else
    }
    # One pass: the CSS and script put in are not searched for placeholders; a placeholder
    # missing from fill is a KeyError here, not a stray __NAME__ on the page.
    html = _PLACEHOLDER.sub(lambda m: fill[m.group(1)], _EXPLORER_HTML)
    if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
        raise ValueError(f"instance must be an integer ≥ 0, got {instance!r}")
    digest = hashlib.sha1(f"{instance}:{html}".encode()).hexdigest()[:12]
    return html.replace("__ID__", "ddpm-se-" + digest)


def show_static_explorer(image: Tensor, **kw) -> None:
    """Display :func:`static_explorer_html` in a notebook; it stays live on the static website."""
    from IPython.display import HTML, display

    display(HTML(static_explorer_html(image, **kw)))
