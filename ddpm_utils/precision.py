"""Numeric precision for training and sampling, chosen by measurement rather than by a CPU flag.

``precision`` is one of:

- ``"fp32"``: float32 throughout;
- ``"bf16"``: bf16 autocast (matrix products and convolutions in bfloat16, weights, gradients,
  the optimiser and the loss's mean in float32);
- ``"fp16"``: fp16 autocast with a ``GradScaler`` in training (CUDA only: GPUs without bf16,
  such as Colab's T4);
- ``"auto"``: time the precisions this device supports on the first steps (or calls) and keep
  the fastest, unless it beats float32 by less than :data:`MARGIN`.

Which precisions are worth timing: float32 everywhere; bf16 on a CUDA GPU that supports it and on
a CPU that computes it natively (AVX512-BF16 or AMX, where emulated bf16 would only be slower);
fp16 on a CUDA GPU without bf16. Having the instructions does not make bf16 fast: on some 2-core
CPUs with AVX512-BF16 a bf16 matrix product runs at 0.6 times the speed of float32. So ``"auto"``
measures, on the model and batch it is given.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MARGIN = 0.05  # a lower precision must be this much faster (5 %) than float32 to be chosen


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX). Necessary for fast bf16, not sufficient."""
    cpu = torch.cpu
    checks = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def candidates(device: torch.device) -> tuple[str, ...]:
    """The precisions ``"auto"`` times on ``device``, float32 first."""
    if device.type == "cuda":
        return ("fp32", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    if device.type == "cpu" and cpu_has_native_bf16():
        return ("fp32", "bf16")
    return ("fp32",)


def resolve(precision: str, device: torch.device) -> tuple[str, str]:
    """An explicit precision as it will run on ``device``, and a note when it had to change.

    ``"bf16"`` on a CPU without bf16 instructions runs in float32 (emulated bf16 is slower);
    ``"bf16"`` on a GPU without bf16 is an error, as is ``"fp16"`` off CUDA. ``"auto"`` is
    returned unchanged.
    """
    check_precision(precision)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA GPU; on {device.type} use 'bf16', 'fp32' or 'auto'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bf16; use precision='fp16' (with a GradScaler) or 'auto'")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return "fp32", "bf16 was asked for, but this CPU has no bf16 instructions (AVX512-BF16 or AMX): float32"
    return precision, ""


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision (a disabled one for float32)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=DTYPES[precision])


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``"auto"`` chose, from which timings, and why, in one line (``str(choice)``)."""

    precision: str  # "fp32", "bf16" or "fp16"
    seconds: dict[str, float] = field(default_factory=dict)  # each candidate's fastest timed step (or call), in s
    reason: str = ""

    def __str__(self) -> str:
        return f"precision: {self.precision} — {self.reason}"


def choose(seconds: dict[str, float], margin: float = MARGIN, unit: str = "step") -> PrecisionChoice:
    """The fastest of the timed precisions, but float32 unless another beats it by more than ``margin``.

    ``seconds`` maps each candidate (``"fp32"`` among them) to its seconds per step.
    """
    if "fp32" not in seconds or not seconds or any(not s > 0 for s in seconds.values()):
        raise ValueError(f"need positive timings including fp32, got {seconds}")
    fastest = min(seconds, key=seconds.get)
    timed = ", ".join(f"{name} {1000 * s:.1f} ms/{unit}" for name, s in seconds.items())
    if fastest == "fp32":
        return PrecisionChoice("fp32", dict(seconds), f"float32 was the fastest here ({timed})")
    gain = seconds["fp32"] / seconds[fastest]
    if gain < 1 + margin:
        return PrecisionChoice("fp32", dict(seconds),
                               f"{fastest} was only {gain:.2f}× float32's speed, within the {margin:.0%} margin ({timed})")
    return PrecisionChoice(fastest, dict(seconds), f"{gain:.2f}× float32's speed on this device ({timed})")


def unmeasured(device: torch.device, why: str) -> PrecisionChoice:
    """The choice when nothing is timed: float32, or the only candidate, with the reason."""
    options = candidates(device)
    if len(options) == 1:
        return PrecisionChoice("fp32", {}, "the only precision worth timing here: this CPU has no bf16 instructions")
    return PrecisionChoice("fp32", {}, f"float32: {why}")


def trial_order(options: tuple[str, ...], timed_rounds: int) -> list[tuple[str, bool]]:
    """The order in which ``"auto"`` tries ``options``: ``(precision, timed)`` pairs.

    First one untimed warm-up round (each candidate once: its kernels and buffers set up), then
    ``timed_rounds`` rounds that alternate the candidates, so that none is timed only on the
    coldest steps or only while the machine is busier.
    """
    return [(p, False) for p in options] + [(p, True) for _ in range(timed_rounds) for p in options]


def time_calls(fn, device: torch.device, options: tuple[str, ...], repeats: int = 3) -> dict[str, float]:
    """The fastest of ``repeats`` timed calls of ``fn()`` under each precision's autocast, in seconds,
    in the order of :func:`trial_order` (a warm-up round, then alternating rounds)."""
    seconds = {precision: float("inf") for precision in options}
    for precision, timed in trial_order(options, repeats):
        with autocast(device, precision):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        if timed:
            seconds[precision] = min(seconds[precision], time.perf_counter() - start)
    return seconds


class PrecisionModel:
    """``model`` called under a precision's autocast, its output returned in float32 (a sampler's model)."""

    def __init__(self, model, device: torch.device, precision: str):
        self.model, self.device, self.precision = model, device, precision

    def __call__(self, *args, **kwargs):
        if self.precision == "fp32":
            return self.model(*args, **kwargs)
        with autocast(self.device, self.precision):
            return self.model(*args, **kwargs).float()


# What "auto" chose, per network, input shape and device, in this Python session (training and
# sampling): a later run or sampler call with the same reuses it instead of timing again.
CHOICES: dict[tuple, PrecisionChoice] = {}


def forget_choices() -> None:
    """Make the next ``precision="auto"`` run or sampler call time its candidates again."""
    CHOICES.clear()


def network_key(model) -> tuple:
    """What identifies a network's cost: its wrappers' types (guidance, respacing), the network's type,
    configuration and parameter count."""
    chain = []
    for _ in range(8):  # unwrap ClassifierFreeGuidance, RespacedModel, PrecisionModel, … to the network
        chain.append(type(model).__qualname__)
        inner = getattr(model, "model", None)
        if inner is None or inner is model:
            break
        model = inner
    parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
    return (*chain, repr(getattr(model, "config", None)), parameters)


def reused(choice: PrecisionChoice, what: str) -> PrecisionChoice:
    return PrecisionChoice(choice.precision, choice.seconds, f"{choice.reason} (timed on an earlier {what})")


def sampling_precision(model, precision: str, xT: torch.Tensor, t_first: int) -> tuple[object, PrecisionChoice]:
    """The model a sampler calls under ``precision``; with ``"auto"``, timed on the sampler's own x_T.

    ``"auto"`` times ``model(x_T, t_first)`` (a warm-up call per candidate, then three alternating
    rounds, keeping each candidate's fastest call; outside the chain: x_T is not changed), then wraps the model in the fastest precision. A later
    call with the same network and x_T shape in the same Python session reuses the choice.
    """
    device = xT.device
    key = ("sample", *network_key(model), tuple(xT.shape), str(device))
    if precision == "auto" and key in CHOICES:
        choice = reused(CHOICES[key], "call with this network and batch")
    elif precision == "auto":
        options = candidates(device)
        if len(options) == 1:
            choice = unmeasured(device, "")
        else:
            t = torch.full((xT.shape[0],), t_first, device=device, dtype=torch.long)
            choice = CHOICES[key] = choose(time_calls(lambda: model(xT, t), device, options), unit="call")
    else:
        resolved, note = resolve(precision, device)
        if note:
            warnings.warn(note, stacklevel=3)
        choice = PrecisionChoice(resolved, {}, note or "as asked")
    model = model if choice.precision == "fp32" else PrecisionModel(model, device, choice.precision)
    return model, choice
