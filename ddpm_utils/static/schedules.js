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
