"""The measurements. Each case is a function ``(preset, workdir, device) -> dict`` of plain numbers.

``python -m benchmarks.cases NAME --preset P --workdir D`` runs one case in a fresh process and
prints ``RESULT {json}`` as its last line; the runner (``python -m benchmarks``) does that for
every case, so each case's peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import ddpm_utils as du
from ddpm_utils.data import ImageData, load_mnist
from ddpm_utils.models import UNet, UNetConfig, count_parameters
from ddpm_utils.models import unet as unet_module
from ddpm_utils.precision import autocast as precision_autocast
from ddpm_utils.precision import candidates, resolve, trial_order
from ddpm_utils.samplers import SAMPLERS
from ddpm_utils.training import TrainConfig, load_checkpoint, save_checkpoint, train

from .presets import PRESETS, Preset, Variant
from .textbook import MnistDigits, textbook_transform, to_uint8, train_textbook

SCHEDULE_T = 1000  # every case uses Ho et al.'s linear schedule with T = 1000
HEAVY_MODULES = ("matplotlib", "torchvision", "tqdm", "scipy", "sklearn", "ipywidgets", "mlxtend", "PIL", "diffusers")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """The resident memory of this process now, in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def memory_report(device: torch.device, baseline_rss_mb: float) -> dict:
    """Peak resident memory of this process and peak CUDA memory (DataLoader workers not counted)."""
    report = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # ru_maxrss is in KiB
        "baseline_rss_mb": baseline_rss_mb,  # after imports and data, before the model
    }
    if device.type == "cuda":
        report["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return report


class DiffusersEps(nn.Module):
    """A diffusers ``UNet2DModel`` behind the package's model interface ``model(xt, t) -> ε̂``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(xt, t, return_dict=False)[0]


def diffusers_twin(config: UNetConfig) -> DiffusersEps:
    """The diffusers ``UNet2DModel`` with the same levels, blocks, attention and groups as ``UNet(config)``.

    Both follow Ho et al.'s architecture, so the parameter counts agree (tests check this).
    """
    from diffusers import UNet2DModel

    levels, attn = len(config.channel_mults), config.attention
    down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D" if attn else "DownBlock2D",)
    up = ("AttnUpBlock2D" if attn else "UpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    unet = UNet2DModel(
        sample_size=config.image_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        block_out_channels=config.channels,
        layers_per_block=config.num_res_blocks,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=config.groups,
        add_attention=attn,
        attention_head_dim=config.channels[-1] // config.num_heads,
        dropout=config.dropout,
    )
    return DiffusersEps(unet)


def _build(kind: str, config: UNetConfig, device: torch.device) -> nn.Module:
    """The package's UNet (``kind="package"``) or its diffusers twin, seeded, on ``device``."""
    torch.manual_seed(0)
    return (UNet(config) if kind == "package" else diffusers_twin(config)).to(device)


def _mnist(split: str, image_size: int = 28) -> ImageData:
    return load_mnist(split, image_size=image_size, verbose=False)


def _warmup(preset: Preset, variant: Variant, device: torch.device) -> int:
    """Steps before the first timed window: the preset's warm-up, plus the trial of precision="auto"."""
    if variant.precision != "auto":
        return preset.warmup_steps
    options = candidates(device)
    trial = len(trial_order(options, TrainConfig().auto_trial_steps)) if len(options) > 1 else 0
    return preset.warmup_steps + trial


def _train_config(preset: Preset, variant: Variant, steps: int, warmup: int, **overrides) -> TrainConfig:
    check_every = math.gcd(warmup, preset.timed_steps)  # marks at the warm-up's end and every window's end
    fields = dict(steps=steps, batch_size=preset.batch_size, precision=variant.precision,
                  channels_last=variant.channels_last, compile=variant.compile, check_every=check_every)
    fields.update(overrides)
    return TrainConfig(**fields)


def _throughput(preset: Preset, window_seconds: list[float], batch_size: int | None = None) -> dict:
    """Images/s and ms/step of each timed window, and their median, min and max."""
    batch = batch_size or preset.batch_size
    per_window = [batch * preset.timed_steps / s for s in window_seconds]
    ms = [1000 * s / preset.timed_steps for s in window_seconds]
    return {
        "timed_steps": preset.timed_steps,
        "repeats": len(window_seconds),
        "window_seconds": window_seconds,
        "ms_per_step": statistics.median(ms),
        "ms_per_step_min": min(ms),
        "ms_per_step_max": max(ms),
        "images_per_s": statistics.median(per_window),
        "images_per_s_min": min(per_window),
        "images_per_s_max": max(per_window),
    }


def _windows(clock: dict[int, float], warmup: int, preset: Preset) -> list[float]:
    """Seconds of each timed window from the clock at step counts (steps done → seconds)."""
    ends = [warmup + k * preset.timed_steps for k in range(preset.repeats + 1)]
    return [clock[b] - clock[a] for a, b in zip(ends, ends[1:])]


# ---------------------------------------------------------------------------------------------
# 1. Training throughput
# ---------------------------------------------------------------------------------------------


def train_textbook_case(preset: Preset, workdir: Path, device: torch.device, model_kind: str = "package",
                        resident: bool = False) -> dict:
    """The textbook loop (DataLoader, per-image transforms, fp32, state_dict EMA) on one model."""
    data = _mnist("train")
    dataset = MnistDigits(to_uint8(data.images), data.labels, textbook_transform(preset.train_model.image_size))
    baseline = _rss_mb()
    model = _build(model_kind, preset.train_model, device)
    schedule = du.make_schedule("linear", SCHEDULE_T)
    steps = preset.warmup_steps + preset.repeats * preset.timed_steps
    clock = train_textbook(model, schedule, dataset, preset.batch_size, steps, resident=resident)
    return {
        "model": model_kind,
        "parameters": count_parameters(model),
        "data_source": data.source,
        **_throughput(preset, _windows({i + 1: c for i, c in enumerate(clock)}, preset.warmup_steps, preset)),
        **memory_report(device, baseline),
    }


def train_package_case(preset: Preset, workdir: Path, device: torch.device, variant: Variant,
                       model_kind: str = "package") -> dict:
    """The package's ``train`` on MNIST padded to 32×32 once and kept on the device."""
    if variant.precision in ("bf16", "fp16"):
        try:
            if resolve(variant.precision, device)[0] != variant.precision:
                return {"skipped": "this CPU has no bf16 instructions (AVX512-BF16 or AMX)"}
        except ValueError as error:
            return {"skipped": str(error)}
    if preset.train_model.image_size != 32:
        raise ValueError("the training benchmark's model must take 32×32 images")
    data = _mnist("train", image_size=32)
    baseline = _rss_mb()
    model = _build(model_kind, preset.train_model, device)
    schedule = du.make_schedule("linear", SCHEDULE_T).to(device)
    warmup = _warmup(preset, variant, device)
    steps = warmup + preset.repeats * preset.timed_steps
    config = _train_config(preset, variant, steps, warmup)
    before = unet_module.ATTENTION_FP32_ON_CPU
    unet_module.ATTENTION_FP32_ON_CPU = variant.attention_fp32_on_cpu
    try:
        result = train(model, schedule, data.images, config, progress=False)
    finally:
        unet_module.ATTENTION_FP32_ON_CPU = before
    marks = dict(result.timeline)
    return {
        "model": model_kind,
        "variant": variant.name,
        "precision": result.precision,
        "precision_note": result.precision_note,
        "parameters": count_parameters(model),
        "data_source": data.source,
        "first_steps_seconds": marks[warmup],  # warm-up (and the "auto" trial), compilation included
        **_throughput(preset, _windows(marks, warmup, preset)),
        **memory_report(device, baseline),
    }


def flops_case(preset: Preset, workdir: Path, device: torch.device) -> dict:
    """FLOPs of one training step (forward and backward) of each model, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = {}
    for kind in ("package", "diffusers"):
        model = _build(kind, preset.train_model, device)
        c = preset.train_model
        xt = torch.randn(preset.batch_size, c.in_channels, c.image_size, c.image_size, device=device)
        t = torch.randint(0, SCHEDULE_T, (preset.batch_size,), device=device)
        with FlopCounterMode(display=False) as counter:
            model(xt, t).square().mean().backward()
        counts[kind] = counter.get_total_flops()
    return {"flops_per_step": counts}


# ---------------------------------------------------------------------------------------------
# 2. Sampling: DDPM with all T steps against DDIM with few
# ---------------------------------------------------------------------------------------------


def _train_sampling_model(preset: Preset, device: torch.device, variant: Variant, steps: int):
    """The sampling model trained with ``variant``'s step for ``steps`` steps: (TrainResult, config, data)."""
    data = _mnist("train", image_size=preset.sample_model.image_size)
    torch.manual_seed(0)
    model = UNet(preset.sample_model).to(device)
    schedule = du.make_schedule("linear", SCHEDULE_T).to(device)
    config = _train_config(preset, variant, steps, 0, batch_size=preset.sample_train_batch,
                           lr=preset.sample_lr, warmup_steps=preset.sample_warmup, ema_decay=preset.sample_ema,
                           check_every=min(50, steps))
    return train(model, schedule, data.images, config, progress=False), schedule, config, data


def sample_train_case(preset: Preset, workdir: Path, device: torch.device) -> dict:
    """Train the sampling model with the recommended step and save its EMA weights in ``workdir``."""
    variant = next(v for v in preset.variants if v.name == preset.recommended)
    result, schedule, config, data = _train_sampling_model(preset, device, variant, preset.sample_train_steps)
    save_checkpoint(workdir / "sampler.pt", result.ema_model, schedule, config)
    tail = result.losses[-max(1, len(result.losses) // 10):]
    return {
        "variant": variant.name,
        "precision": result.precision,
        "precision_note": result.precision_note,
        "parameters": count_parameters(result.model),
        "data_source": data.source,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "seconds": result.seconds,
        "final_loss": float(tail.mean()),
    }


def _judge(device: torch.device):
    from ddpm_utils.metrics import load_classifier

    train_digits, test_digits = _mnist("train"), _mnist("test")
    return load_classifier(device, data=(train_digits, test_digits), verbose=False), train_digits, test_digits


def _quality(classifier, samples: torch.Tensor, train_digits, test_digits):
    from ddpm_utils.metrics import mnist_quality

    if samples.shape[-1] == 32:
        samples = samples[..., 2:-2, 2:-2]  # the classifier reads 28×28: drop the padding
    return mnist_quality(classifier, samples, test_digits, train_digits, generator=torch.Generator().manual_seed(0))


def sample_case(preset: Preset, workdir: Path, device: torch.device, kind: str, steps: int,
                precision: str | None = None) -> dict:
    """Time ``sample_batches`` calls of a sampler on ``sample_batch`` images; Fréchet distance of all.

    The sampler runs in ``precision`` (the preset's ``sample_precision`` by default) under
    ``torch.inference_mode``, as every sampler of the package does.
    """
    precision = precision or preset.sample_precision
    classifier, train_digits, test_digits = _judge(device)
    baseline = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = UNet(preset.sample_model).to(device).eval()
    schedule = load_checkpoint(workdir / "sampler.pt", model)
    c = preset.sample_model
    shape = (preset.sample_batch, c.in_channels, c.image_size, c.image_size)
    with torch.inference_mode():  # warm-up
        model(torch.zeros(shape, device=device), torch.zeros(shape[0], dtype=torch.long, device=device))
    sampler = SAMPLERS[kind]
    options = dict(steps=None if kind == "ddpm" and steps == schedule.T else steps, clip_x0=True,
                   precision=precision)
    if kind == "ddim":
        options["eta"] = 0.0
    chosen = []
    seconds, batches = [], []
    for b in range(preset.sample_batches):
        gen = torch.Generator(device).manual_seed(b)  # the same x_T and noise for every sampler
        xT = torch.randn(shape, generator=gen, device=device)
        _sync(device)
        start = time.perf_counter()
        x0 = sampler(model, schedule, xT, generator=gen, **options)
        _sync(device)
        seconds.append(time.perf_counter() - start)
        batches.append(x0.clamp(-1, 1).cpu())
    if precision == "auto":  # what "auto" picks for this model and batch, timed once more outside the clock
        from ddpm_utils.precision import sampling_precision

        with torch.inference_mode():
            chosen.append(sampling_precision(model, "auto", xT, schedule.T - 1)[1])
    quality = _quality(classifier, torch.cat(batches), train_digits, test_digits)
    mean = statistics.fmean(seconds)
    return {
        "sampler": kind,
        "steps": steps,
        "precision": precision,
        "chosen": chosen[0].precision if chosen else resolve(precision, device)[0],
        "chosen_note": str(chosen[0]) if chosen else "",
        "batch": preset.sample_batch,
        "seconds_per_batch": seconds,
        "mean_seconds": mean,
        "median_seconds": statistics.median(seconds),
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "std_seconds": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
        "ms_per_step": 1000 * statistics.median(seconds) / steps,
        "frechet": quality.frechet,
        "floor": quality.floor,
        "n": quality.n,
        "class_counts": quality.class_counts.tolist(),
        "data_source": test_digits.source,
        **memory_report(device, baseline),
    }


def quality_case(preset: Preset, workdir: Path, device: torch.device, precision: str) -> dict:
    """The sampling model trained ``quality_steps`` steps in ``precision``: its loss and its samples' Fréchet
    distance (DDIM-50 in float32, the same x_T for every precision), so that a faster precision cannot
    change quality silently."""
    variant = Variant(precision, precision, precision=precision)
    try:
        if resolve(precision, device)[0] != precision:
            return {"skipped": f"{precision} runs as float32 here"}
    except ValueError as error:
        return {"skipped": str(error)}
    result, schedule, config, data = _train_sampling_model(preset, device, variant, preset.quality_steps)
    classifier, train_digits, test_digits = _judge(device)
    c = preset.sample_model
    xT = torch.randn((preset.quality_images, c.in_channels, c.image_size, c.image_size),
                     generator=torch.Generator().manual_seed(0)).to(device)
    samples = du.ddim_sample(result.ema_model.eval(), schedule, xT, steps=50, clip_x0=True).clamp(-1, 1).cpu()
    quality = _quality(classifier, samples, train_digits, test_digits)
    tail = result.losses[-max(1, len(result.losses) // 10):]
    return {
        "precision": result.precision,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "seconds": result.seconds,
        "final_loss": float(tail.mean()),
        "final_loss_sd": float(tail.std()) if len(tail) > 1 else 0.0,
        "frechet": quality.frechet,
        "floor": quality.floor,
        "n": quality.n,
        "data_source": data.source,
    }


# ---------------------------------------------------------------------------------------------
# Where the time goes: a profile of one training step, against this machine's matrix-product ceiling
# ---------------------------------------------------------------------------------------------


def matmul_reference(sizes: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> dict:
    """FLOP/s of n × n matrix products in ``dtype`` for each n of ``sizes``, and the fastest: the
    reference speed a step is compared with (not a hard ceiling: a convolution can beat it)."""
    per_size = {str(n): matmul_flops(n, dtype, device) for n in sizes}
    best = max(per_size, key=per_size.get)
    return {"flops_per_s": per_size[best], "size": int(best), "per_size": per_size}


def matmul_flops(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of an n × n matrix product in ``dtype`` (median of ``repeats`` after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def profile_case(preset: Preset, workdir: Path, device: torch.device) -> dict:
    """torch.profiler on one training step (forward, backward, AdamW) of the training model, fp32 and bf16.

    Reports the operators with the most self time, the step's time (median of 3) and FLOP/s, and
    the ceiling of an n × n matrix product in the same precision, measured in the same run. On a
    CPU the bf16 step is also profiled with attention in bf16, the layout before the profile.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    c = preset.train_model
    out = {"batch": preset.profile_batch, "ceilings": {}, "steps": {}}
    entries = [("fp32", "fp32", True), ("bf16", "bf16", True)]
    if device.type == "cpu":  # the package's bf16 step computes attention in fp32 on a CPU: profile both
        entries.append(("bf16, attention also in bf16", "bf16", False))
    for name, precision, attention_fp32 in entries:
        if resolve(precision, device)[0] != precision:
            if "emulated_bf16" not in out:  # why "auto" does not even time bf16 here: one small product shows it
                n = min(preset.matmul_sizes)
                out["emulated_bf16"] = {"size": n, "flops_per_s": matmul_flops(n, torch.bfloat16, device, repeats=1),
                                        "fp32_flops_per_s": matmul_flops(n, torch.float32, device)}
            out["steps"][name] = {"skipped": "no bf16 instructions"}
            continue
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        if precision not in out["ceilings"]:
            reference = matmul_reference(preset.matmul_sizes, dtype, device)
            out["ceilings"][precision] = reference["flops_per_s"]
            out.setdefault("matmul", {})[precision] = reference
        model = _build("package", c, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        xt = torch.randn(preset.profile_batch, c.in_channels, c.image_size, c.image_size, device=device)
        t = torch.randint(0, SCHEDULE_T, (preset.profile_batch,), device=device)
        autocast = precision_autocast(device, precision)

        def step():
            with autocast:
                loss = (model(xt, t).float() - xt).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        before = unet_module.ATTENTION_FP32_ON_CPU
        unet_module.ATTENTION_FP32_ON_CPU = attention_fp32
        try:
            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
            step()  # warm-up
            times = []
            for _ in range(3):
                _sync(device)
                start = time.perf_counter()
                step()
                _sync(device)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                step()
                _sync(device)
        finally:
            unet_module.ATTENTION_FP32_ON_CPU = before
        events = prof.key_averages()
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        total = sum(getattr(e, key) for e in events)
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:10]
        out["steps"][name] = {
            "precision": precision,
            "seconds": seconds,
            "flops": flops,
            "flops_per_s": flops / seconds,
            "share_of_ceiling": flops / seconds / out["ceilings"][precision],
            "top": [{"op": e.key, "self_ms": getattr(e, key) / 1000, "share": getattr(e, key) / total,
                     "calls": e.count} for e in top],
        }
    return out


# ---------------------------------------------------------------------------------------------
# 3. Import time
# ---------------------------------------------------------------------------------------------

_IMPORT_PROBE = (
    "import json, sys, time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
    "before = set(sys.modules); import ddpm_utils; t2 = time.perf_counter(); "
    f"print(json.dumps([t1 - t0, t2 - t1, [m for m in {HEAVY_MODULES!r} if m in set(sys.modules) - before]]))"
)


def import_case(preset: Preset, workdir: Path, device: torch.device) -> dict:
    """Seconds to import torch, then ddpm_utils on top, each in a fresh interpreter (medians)."""
    runs = []
    for _ in range(preset.import_repeats):
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "repeats": len(runs),
        "torch_seconds": statistics.median(r[0] for r in runs),
        "ddpm_utils_seconds": statistics.median(r[1] for r in runs),
        "ddpm_utils_seconds_all": [r[1] for r in runs],
        "heavy_modules_added": sorted({m for r in runs for m in r[2]}),
        "heavy_modules_checked": list(HEAVY_MODULES),
    }


# ---------------------------------------------------------------------------------------------
# The list of cases
# ---------------------------------------------------------------------------------------------


def case_table(preset: Preset) -> dict:
    """Name → function of (preset, workdir, device), in the order the runner runs them."""
    cases = {
        "import": import_case,
        "flops": flops_case,
        "train/textbook": lambda p, w, d: train_textbook_case(p, w, d),
        "train/textbook-resident": lambda p, w, d: train_textbook_case(p, w, d, resident=True),
    }
    for variant in preset.variants:
        cases[f"train/{variant.name}"] = lambda p, w, d, v=variant: train_package_case(p, w, d, v)
    recommended = next(v for v in preset.variants if v.name == preset.recommended)
    cases["train/diffusers-textbook"] = lambda p, w, d: train_textbook_case(p, w, d, model_kind="diffusers")
    cases[f"train/diffusers-{recommended.name}"] = (
        lambda p, w, d: train_package_case(p, w, d, recommended, model_kind="diffusers"))
    cases["sample/train"] = sample_train_case
    for kind, steps in preset.samplers:
        cases[f"sample/{kind}-{steps}"] = lambda p, w, d, k=kind, s=steps: sample_case(p, w, d, k, s)
    for precision in preset.compared_precisions:
        cases[f"sample/ddim-50@{precision}"] = lambda p, w, d, q=precision: sample_case(p, w, d, "ddim", 50, q)
    for precision in preset.compared_precisions:
        cases[f"quality/{precision}"] = lambda p, w, d, q=precision: quality_case(p, w, d, q)
    cases["profile"] = profile_case
    return cases


def run_case(name: str, preset: Preset, workdir: Path, device: torch.device | None = None) -> dict:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases = case_table(preset)
    if name not in cases:
        raise ValueError(f"unknown case {name!r}; the {preset.name} preset has {list(cases)}")
    start = time.perf_counter()
    result = cases[name](preset, workdir, device)
    result["case_seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one benchmark case; print RESULT {json}.")
    parser.add_argument("name")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args(argv)
    result = run_case(args.name, PRESETS[args.preset], args.workdir)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
