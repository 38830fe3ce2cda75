// The static schedule explorer: draws the figure and wires the controls of one explorer <div>
// (explorer.html). ddpm_utils/static_explorer.py puts schedules.js and the <div>'s id in place
// of the two placeholders below; the digit, ε and the starting β range come from the <div>'s
// data- attributes.
(function () {
  "use strict";
  __SCHEDULE_JS__
  const ID = "__ID__";
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
  // image and noise: 28·28 pixels each, row-major.
  function drawDigit(ctx, image, noise, ab, kind, t) {
    const n = 28, px = IMG.size / n, a = Math.sqrt(ab), b = Math.sqrt(1 - ab);
    for (let i = 0; i < n * n; i++) {
      const v = Math.min(1, Math.max(-1, a * image[i] + b * noise[i]));
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
    // data-image, data-noise: JSON arrays of 28·28 pixels; data-beta1, data-beta-t: numbers.
    const image = JSON.parse(root.dataset.image), noise = JSON.parse(root.dataset.noise);
    const state = {beta1: +root.dataset.beta1, betaT: +root.dataset.betaT};

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
      drawDigit(ctx, image, noise, ab[kind][t - 1], kind, t);

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
