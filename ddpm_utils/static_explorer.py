"""A schedule explorer that needs no kernel: HTML and JavaScript, stored in the notebook's output.

The ipywidgets explorer (:mod:`ddpm_utils.widgets`) redraws through a running kernel, so on the
static website it is dead. :func:`static_explorer_html` instead returns one self-contained
``<div>``: the digit and a fixed ε embedded as JSON, ``<input type=range>``/``<select>``
controls, a ``<canvas>`` and an inline ``<script>`` that recomputes everything in the browser.
No external script, stylesheet or network access; two explorers on one page do not clash.
The figure is 900×320 px and scales down to the page's column (to 620 px, then it scrolls
sideways). Jupyter Book's column is narrower than 900 px: tag the notebook cell ``full-width``
to give the explorer its full size there.

The schedules are recomputed in JavaScript exactly as :mod:`ddpm_utils.schedules` defines them.
That code lives in one string, :data:`SCHEDULE_JS`, so the tests can run it in node and compare
it with :func:`~ddpm_utils.schedules.make_schedule` (tests/test_static_explorer.py).

What it draws, for the paper's timestep t = 1 … T (code index t - 1):

* ᾱ_t of the three schedules, the chosen one bold, with a marker at t;
* log₁₀ SNR = log₁₀(ᾱ_t / (1 - ᾱ_t)), likewise;
* x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε for the chosen schedule (Ho et al. Eq. 4), pixels in [-1, 1]
  shown as grey, clipped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import torch
from torch import Tensor

from .schedules import SCHEDULE_KINDS

IMAGE_SHAPE = (1, 28, 28)  # one MNIST digit (C, H, W), pixels in [-1, 1]
T_RANGE = (10, 2000)  # the T slider, as in the ipywidgets explorer
BETA_START_LOG10 = (-5.0, -1.0)  # the β₁ slider (linear schedule), log₁₀ scale
BETA_END_LOG10 = (-3.0, -0.05)  # the β_T slider (linear schedule), log₁₀ scale

# Numbers the explorers made in this process. With the content it gives each explorer's id:
# unique within a notebook, yet the same when the notebook is run again (no diff in git).
_explorer_count = itertools.count()

# The schedules of ddpm_utils/schedules.py, in float64 like the Python. Kept in one string so
# that tests/test_static_explorer.py runs exactly this code in node.
SCHEDULE_JS = r"""
// Noise schedules, as ddpm_utils/schedules.py defines them.
// Arrays have length T; index i is the paper's timestep i + 1.

// β_t evenly spaced from beta1 to betaT (Ho et al. 2020): torch.linspace(beta1, betaT, T).
function linearBetas(T, beta1, betaT) {
  const betas = new Array(T);
  const step = T > 1 ? (betaT - beta1) / (T - 1) : 0;
  for (let i = 0; i < T; i++) betas[i] = beta1 + step * i;
  if (T > 1) betas[T - 1] = betaT;
  return betas;
}

// Discretise a continuous ᾱ(τ), τ ∈ [0, 1]: β_t = 1 - ᾱ(t/T) / ᾱ((t-1)/T), clipped at maxBeta.
function betasFromAlphaBar(alphaBar, T, maxBeta) {
  const betas = new Array(T);
  for (let i = 0; i < T; i++) {
    const beta = 1 - alphaBar((i + 1) / T) / alphaBar(i / T);
    betas[i] = Math.min(beta, maxBeta);
  }
  return betas;
}

// Nichol & Dhariwal (2021) Eq. 17: ᾱ(τ) = f(τ)/f(0), f(τ) = cos²((τ + s)/(1 + s) · π/2).
function cosineBetas(T, s = 0.008, maxBeta = 0.999) {
  const f = (tau) => Math.cos(((tau + s) / (1 + s)) * Math.PI / 2) ** 2;
  return betasFromAlphaBar((tau) => f(tau) / f(0), T, maxBeta);
}

// Chen (2023), Algorithm 1: ᾱ(τ) falls from 1 to 0 along a sigmoid.
function sigmoidBetas(T, start = -3, end = 3, tau = 1, maxBeta = 0.999) {
  const sigmoid = (x) => 1 / (1 + Math.exp(-x));
  const vStart = sigmoid(start / tau);
  const vEnd = sigmoid(end / tau);
  const alphaBar = (t) => (vEnd - sigmoid((t * (end - start) + start) / tau)) / (vEnd - vStart);
  return betasFromAlphaBar(alphaBar, T, maxBeta);
}

// log ᾱ_t = Σ_{s≤t} log(1 - β_s): a cumulative sum of logs, as the Python does.
// beta1 and betaT apply to the linear schedule only.
function logAlphaBars(kind, T, beta1, betaT) {
  let betas;
  if (kind === "linear") betas = linearBetas(T, beta1, betaT);
  else if (kind === "cosine") betas = cosineBetas(T);
  else if (kind === "sigmoid") betas = sigmoidBetas(T);
  else throw new Error("unknown schedule kind " + kind);
  const logAb = new Array(T);
  let sum = 0;
  for (let i = 0; i < T; i++) {
    sum += Math.log(1 - betas[i]);
    logAb[i] = sum;
  }
  return logAb;
}

// ᾱ_t for t = 1 … T.
function alphaBars(kind, T, beta1, betaT) {
  return logAlphaBars(kind, T, beta1, betaT).map(Math.exp);
}

// log₁₀ SNR = (log ᾱ_t - log(1 - ᾱ_t)) / ln 10, with 1 - ᾱ_t = -expm1(log ᾱ_t):
// accurate at both ends, finite even where ᾱ_t underflows.
function log10Snr(logAb) {
  return logAb.map((la) => (la - Math.log(-Math.expm1(la))) / Math.LN10);
}
"""

# Draws the figure and wires the controls. __ID__, __DATA__ and __SCHEDULE_JS__ are filled in.
_DRAW_JS = r"""
(function () {
  "use strict";
  __SCHEDULE_JS__
  const ID = "__ID__";
  const DATA = __DATA__;  // {image, noise: 28·28 pixels, row-major; beta1, betaT}
  const KINDS = ["linear", "cosine", "sigmoid"];
  const COLORS = {linear: "#1f77b4", cosine: "#ff7f0e", sigmoid: "#2ca02c"};
  const W = 900, H = 320;  // CSS pixels; the canvas scales down to the page's column
  const FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const FONT = "13px " + FAMILY, SUB_FONT = "10px " + FAMILY;
  const script = document.currentScript;

  // Three panels on one canvas: ᾱ_t, log₁₀ SNR (plot areas) and the noised digit.
  const PANEL_AB = {x: 62, y: 34, w: 250, h: 226};
  const PANEL_SNR = {x: 392, y: 34, w: 250, h: 226};
  const IMG = {x: 682, y: 40, size: 196};

  const fmt = (x) => (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4) || x === 0
    ? x.toPrecision(3) : x.toExponential(2);

  // "Nice" tick positions covering [lo, hi].
  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  // Text centred on x, with TeX-like subscripts: "log_{10} SNR", "ᾱ_t".
  function label(ctx, text, x, y) {
    const parts = text.split(/_(\{[^}]*\}|.)/).map((s, i) => ({
      s: i % 2 ? s.replace(/[{}]/g, "") : s,  // odd pieces are the subscripts
      font: i % 2 ? SUB_FONT : FONT,
      dy: i % 2 ? 4 : 0,
    }));
    const width = (p) => { ctx.font = p.font; return ctx.measureText(p.s).width; };
    let cx = x - parts.reduce((sum, p) => sum + width(p), 0) / 2;
    ctx.textAlign = "left";
    for (const p of parts) {
      const w = width(p);
      ctx.fillText(p.s, cx, y + p.dy);
      cx += w;
    }
    ctx.font = FONT;
  }

  // One line plot: every schedule's curve, the chosen one bold, a dashed marker at t.
  function plot(ctx, box, curves, chosen, T, t, yLo, yHi, title, yLabel, legend) {
    const X = (step) => box.x + ((step - 1) / Math.max(T - 1, 1)) * box.w;
    const Y = (v) => box.y + box.h - ((v - yLo) / (yHi - yLo)) * box.h;
    ctx.strokeStyle = "#e5e5e5"; ctx.lineWidth = 1; ctx.fillStyle = "#333";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of ticks(yLo, yHi, 5)) {
      ctx.beginPath(); ctx.moveTo(box.x, Y(v)); ctx.lineTo(box.x + box.w, Y(v)); ctx.stroke();
      ctx.fillText(String(v), box.x - 6, Y(v));
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of ticks(1, T, 5)) {
      ctx.beginPath(); ctx.moveTo(X(v), box.y); ctx.lineTo(X(v), box.y + box.h); ctx.stroke();
      ctx.fillText(String(v), X(v), box.y + box.h + 5);
    }
    ctx.strokeStyle = "#555"; ctx.strokeRect(box.x, box.y, box.w, box.h);

    ctx.save();
    ctx.beginPath(); ctx.rect(box.x, box.y, box.w, box.h); ctx.clip();
    for (const kind of KINDS.filter((k) => k !== chosen).concat([chosen])) {
      const ys = curves[kind];
      ctx.strokeStyle = COLORS[kind];
      ctx.lineWidth = kind === chosen ? 2.6 : 1.2;
      ctx.globalAlpha = kind === chosen ? 1 : 0.55;
      ctx.beginPath();
      ys.forEach((v, i) => ctx.lineTo(X(i + 1), Y(Math.max(v, yLo - 1))));
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.setLineDash([4, 3]); ctx.strokeStyle = "#222"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(t), box.y); ctx.lineTo(X(t), box.y + box.h); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLORS[chosen]; ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(X(t), Y(curves[chosen][t - 1]), 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    ctx.restore();

    ctx.fillStyle = "#111"; ctx.textBaseline = "alphabetic";
    label(ctx, title, box.x + box.w / 2, box.y - 12);
    ctx.fillStyle = "#333";
    label(ctx, "t (paper's timestep)", box.x + box.w / 2, box.y + box.h + 34);
    ctx.save();
    ctx.translate(box.x - 44, box.y + box.h / 2); ctx.rotate(-Math.PI / 2);
    label(ctx, yLabel, 0, 0);
    ctx.restore();

    if (legend) {  // top right, inside the plot
      const lx = box.x + box.w - 88, ly = box.y + 8;
      ctx.fillStyle = "rgba(255,255,255,0.85)"; ctx.fillRect(lx - 6, ly - 2, 90, 52);
      ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1; ctx.strokeRect(lx - 6, ly - 2, 90, 52);
      KINDS.forEach((kind, i) => {
        const y = ly + 8 + i * 16;
        ctx.strokeStyle = COLORS[kind]; ctx.lineWidth = kind === chosen ? 2.6 : 1.2;
        ctx.beginPath(); ctx.moveTo(lx, y); ctx.lineTo(lx + 20, y); ctx.stroke();
        ctx.fillStyle = "#222"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
        ctx.font = (kind === chosen ? "bold " : "") + FONT;
        ctx.fillText(kind, lx + 26, y);
      });
      ctx.font = FONT; ctx.textBaseline = "alphabetic";
    }
  }

  // x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, clipped to [-1, 1], upscaled without smoothing.
  function drawDigit(ctx, ab, kind, t) {
    const n = 28, px = IMG.size / n, a = Math.sqrt(ab), b = Math.sqrt(1 - ab);
    for (let i = 0; i < n * n; i++) {
      const v = Math.min(1, Math.max(-1, a * DATA.image[i] + b * DATA.noise[i]));
      const g = Math.round((v + 1) * 127.5);
      ctx.fillStyle = "rgb(" + g + "," + g + "," + g + ")";
      ctx.fillRect(IMG.x + (i % n) * px, IMG.y + Math.floor(i / n) * px, Math.ceil(px), Math.ceil(px));
    }
    ctx.strokeStyle = "#555"; ctx.lineWidth = 1; ctx.strokeRect(IMG.x, IMG.y, IMG.size, IMG.size);
    ctx.fillStyle = "#111";
    const mid = IMG.x + IMG.size / 2;
    label(ctx, "x_t at t = " + t + " (" + kind + ")", mid, IMG.y - 18);
    ctx.fillStyle = "#555";
    label(ctx, "√ᾱ_t x_0 + √(1 − ᾱ_t) ε, fixed ε", mid, IMG.y + IMG.size + 20);
    label(ctx, "grey: −1 black … +1 white, clipped", mid, IMG.y + IMG.size + 38);
  }

  function start(root) {
    const $ = (role) => root.querySelector('[data-role="' + role + '"]');
    const canvas = $("canvas");
    const dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr; canvas.height = H * dpr;
    const ctx = canvas.getContext("2d");
    const state = {beta1: DATA.beta1, betaT: DATA.betaT};

    function redraw() {
      const kind = $("kind").value, T = +$("T").value;
      const tInput = $("t");
      tInput.max = T;
      if (+tInput.value > T) tInput.value = T;
      const t = +tInput.value;
      const logAb = {}, ab = {}, snr = {};
      for (const k of KINDS) {
        logAb[k] = logAlphaBars(k, T, state.beta1, state.betaT);
        ab[k] = logAb[k].map(Math.exp);
        snr[k] = log10Snr(logAb[k]);
      }
      const all = KINDS.flatMap((k) => snr[k]).filter(Number.isFinite);
      // The SNR axis: whole decades, at most 10¹² either way (clipped beyond).
      const snrHi = Math.min(Math.ceil(Math.max(...all)), 12);
      const snrLo = Math.max(Math.floor(Math.min(...all)), -12);

      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
      ctx.font = FONT; ctx.lineJoin = "round";
      plot(ctx, PANEL_AB, ab, kind, T, t, 0, 1, "ᾱ_t of the three schedules", "ᾱ_t", true);
      plot(ctx, PANEL_SNR, snr, kind, T, t, snrLo, snrHi,
        "log_{10} SNR = log_{10} ᾱ_t / (1 − ᾱ_t)", "log_{10} SNR", false);
      drawDigit(ctx, ab[kind][t - 1], kind, t);

      $("T-value").textContent = T;
      $("t-value").textContent = t + " of " + T;
      $("beta1-value").textContent = state.beta1.toExponential(2);
      $("betaT-value").textContent = state.betaT.toExponential(2);
      $("ab").textContent = fmt(ab[kind][t - 1]);
      $("snr").textContent = fmt(10 ** snr[kind][t - 1]);
      $("log10snr").textContent = snr[kind][t - 1].toFixed(2);
      $("t-readout").textContent = t + " ";
      $("index").textContent = t - 1;
      // The β sliders shape the linear schedule only: fade them for the others.
      root.querySelectorAll(".ddpm-se-linear").forEach((el) => { el.style.opacity = kind === "linear" ? 1 : 0.55; });
    }

    $("beta1").addEventListener("input", (e) => { state.beta1 = 10 ** +e.target.value; redraw(); });
    $("betaT").addEventListener("input", (e) => { state.betaT = 10 ** +e.target.value; redraw(); });
    for (const role of ["T", "t"]) $(role).addEventListener("input", redraw);
    $("kind").addEventListener("change", redraw);
    redraw();
  }

  // Find this explorer's <div>; retry briefly for front ends that attach the output late.
  let tries = 0;
  (function find() {
    const root = document.getElementById(ID) || (script && script.closest && script.closest("#" + ID));
    if (root) start(root);
    else if (tries++ < 100) setTimeout(find, 50);
  })();
})();
"""

_CSS = """
#__ID__ { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1em; }
#__ID__ .ddpm-se-inner { box-sizing: border-box; width: 100%; max-width: 902px; min-width: 620px;
  background: #fff; color: #222; border: 1px solid #ddd; border-radius: 6px; padding: 8px 0 4px;
  font: 13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
#__ID__ .ddpm-se-controls { display: flex; flex-wrap: wrap; gap: 6px 18px; padding: 0 14px 6px;
  align-items: center; }
#__ID__ label { display: inline-flex; align-items: center; gap: 6px; margin: 0; }
#__ID__ input[type=range] { width: 130px; margin: 0; }
#__ID__ select { font: inherit; padding: 1px 4px; color: #222; background: #fff; border: 1px solid #bbb;
  border-radius: 3px; }
#__ID__ output { display: inline-block; min-width: 5.5em; font-variant-numeric: tabular-nums; }
#__ID__ .ddpm-se-readout { padding: 0 14px 4px; font-variant-numeric: tabular-nums; }
#__ID__ canvas { display: block; width: 100%; height: auto; }  /* 900×320, scaled down to fit */
"""

_HTML = """<div id="__ID__" class="ddpm-static-explorer">
<style>__CSS__</style>
<div class="ddpm-se-inner">
 <div class="ddpm-se-controls">
  <label><span>schedule</span> <select data-role="kind" aria-label="schedule kind">__OPTIONS__</select></label>
  <label><span>T</span> <input type="range" data-role="T" aria-label="T"
   min="__TMIN__" max="__TMAX__" step="1" value="__T__">
   <output data-role="T-value"></output></label>
  <label><span>t</span> <input type="range" data-role="t" aria-label="t" min="1" max="__T__" step="1" value="__t__">
   <output data-role="t-value"></output></label>
  <label class="ddpm-se-linear"><span>β<sub>1</sub> (linear)</span>
   <input type="range" data-role="beta1" aria-label="beta_1" min="__B1MIN__" max="__B1MAX__" step="any"
    value="__B1__"> <output data-role="beta1-value"></output></label>
  <label class="ddpm-se-linear"><span>β<sub>T</sub> (linear)</span>
   <input type="range" data-role="betaT" aria-label="beta_T" min="__BTMIN__" max="__BTMAX__" step="any"
    value="__BT__"> <output data-role="betaT-value"></output></label>
 </div>
 <div class="ddpm-se-readout">At t = <span data-role="t-readout"></span>(code index <span data-role="index"></span>):
  ᾱ<sub>t</sub> = <b data-role="ab"></b>, &nbsp;SNR = ᾱ<sub>t</sub>/(1−ᾱ<sub>t</sub>) = <b data-role="snr"></b>,
  &nbsp;log<sub>10</sub> SNR = <b data-role="log10snr"></b></div>
 <canvas data-role="canvas" width="900" height="320" role="img"
  aria-label="alpha-bar and log SNR of three noise schedules, and a digit noised at t"></canvas>
</div>
<script>__SCRIPT__</script>
</div>"""


def _check_range(name: str, value: float, log10_range: tuple[float, float]) -> None:
    lo, hi = 10 ** log10_range[0], 10 ** log10_range[1]
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo:.3g}, {hi:.3g}] (the slider's range), got {value!r}")


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
    T: int = 1000,
    t: int = 250,
    kind: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> str:
    """The HTML of a schedule explorer that runs in the browser, with no kernel.

    Args:
        image: one digit x_0, shape ``(1, 28, 28)``, pixels in [-1, 1].
        noise: the fixed ε, same shape; by default drawn from N(0, I) with ``seed`` (the same
            ε as :func:`ddpm_utils.widgets.schedule_explorer` draws with that seed).
        T, t, kind, beta_start, beta_end: the controls' starting values; ``t`` is the paper's
            timestep 1 … T, and the β range (β₁, β_T) applies to the linear schedule.

    Returns:
        One ``<div>`` with an id unique to this call, its own ``<style>`` and an inline
        ``<script>``. The id depends only on the arguments and on how many explorers this
        process made before, so re-running a notebook gives the same output.

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
    if isinstance(T, bool) or not isinstance(T, int) or not T_RANGE[0] <= T <= T_RANGE[1]:
        raise ValueError(f"T must be an integer in [{T_RANGE[0]}, {T_RANGE[1]}], got {T!r}")
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= T:
        raise ValueError(f"t must lie in [1, T={T}] (the paper's timestep), got {t!r}")
    _check_range("beta_start", beta_start, BETA_START_LOG10)
    _check_range("beta_end", beta_end, BETA_END_LOG10)

    data = (
        f'{{"image":{_as_json_list(image)},"noise":{_as_json_list(noise)},'
        f'"beta1":{json.dumps(float(beta_start))},"betaT":{json.dumps(float(beta_end))}}}'
    )
    script = _DRAW_JS.replace("__SCHEDULE_JS__", SCHEDULE_JS.strip()).replace("__DATA__", data)
    options = "".join(
        f'<option value="{k}"{" selected" if k == kind else ""}>{k}</option>' for k in SCHEDULE_KINDS
    )
    fill = {
        "__CSS__": _CSS,
        "__OPTIONS__": options,
        "__TMIN__": str(T_RANGE[0]),
        "__TMAX__": str(T_RANGE[1]),
        "__T__": str(T),
        "__t__": str(t),
        "__B1MIN__": str(BETA_START_LOG10[0]),
        "__B1MAX__": str(BETA_START_LOG10[1]),
        "__B1__": repr(math.log10(beta_start)),
        "__BTMIN__": str(BETA_END_LOG10[0]),
        "__BTMAX__": str(BETA_END_LOG10[1]),
        "__BT__": repr(math.log10(beta_end)),
        "__SCRIPT__": script,
    }
    html = _HTML
    for key, value in fill.items():  # __SCRIPT__ last: the script's own text is not rescanned
        html = html.replace(key, value)
    digest = hashlib.sha1(f"{next(_explorer_count)}:{html}".encode()).hexdigest()[:12]
    return html.replace("__ID__", "ddpm-se-" + digest)


def show_static_explorer(image: Tensor, **kw) -> None:
    """Display :func:`static_explorer_html` in a notebook; it stays live on the static website."""
    from IPython.display import HTML, display

    display(HTML(static_explorer_html(image, **kw)))
