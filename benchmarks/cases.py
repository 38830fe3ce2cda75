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
from ddpm_utils.training import TrainConfig, cpu_has_native_bf16, load_checkpoint, save_checkpoint, train

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


def _train_config(preset: Preset, variant: Variant, steps: int, **overrides) -> TrainConfig:
    check_every = math.gcd(preset.warmup_steps, preset.timed_steps)  # marks at the warm-up's end and the end
    fields = dict(steps=steps, batch_size=preset.batch_size, amp=variant.bf16, cpu_bf16=variant.bf16,
                  channels_last=variant.channels_last, compile=variant.compile, check_every=check_every)
    fields.update(overrides)
    return TrainConfig(**fields)


def _throughput(preset: Preset, seconds: float) -> dict:
    """Images/s and ms/step from the wall time of the timed steps."""
    return {
        "timed_steps": preset.timed_steps,
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / preset.timed_steps,
        "images_per_s": preset.batch_size * preset.timed_steps / seconds,
    }


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
    steps = preset.warmup_steps + preset.timed_steps
    clock = train_textbook(model, schedule, dataset, preset.batch_size, steps, resident=resident)
    return {
        "model": model_kind,
        "parameters": count_parameters(model),
        "data_source": data.source,
        **_throughput(preset, clock[-1] - clock[preset.warmup_steps - 1]),
        **memory_report(device, baseline),
    }


def train_package_case(preset: Preset, workdir: Path, device: torch.device, variant: Variant,
                       model_kind: str = "package") -> dict:
    """The package's ``train`` on MNIST padded to 32×32 once and kept on the device."""
    if variant.bf16 and device.type == "cpu" and not cpu_has_native_bf16():
        return {"skipped": "this CPU has no native bf16 (AVX512-BF16 or AMX)"}
    if preset.train_model.image_size != 32:
        raise ValueError("the training benchmark's model must take 32×32 images")
    data = _mnist("train", image_size=32)
    baseline = _rss_mb()
    model = _build(model_kind, preset.train_model, device)
    schedule = du.make_schedule("linear", SCHEDULE_T).to(device)
    steps = preset.warmup_steps + preset.timed_steps
    config = _train_config(preset, variant, steps)
    result = train(model, schedule, data.images, config, progress=False)
    marks = dict(result.timeline)
    return {
        "model": model_kind,
        "variant": variant.name,
        "parameters": count_parameters(model),
        "data_source": data.source,
        "first_steps_seconds": marks[preset.warmup_steps],  # warm-up, compilation included
        **_throughput(preset, marks[steps] - marks[preset.warmup_steps]),
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


def sample_train_case(preset: Preset, workdir: Path, device: torch.device) -> dict:
    """Train the sampling model with the recommended step and save its EMA weights in ``workdir``."""
    variant = next(v for v in preset.variants if v.name == preset.recommended)
    data = _mnist("train", image_size=preset.sample_model.image_size)
    torch.manual_seed(0)
    model = UNet(preset.sample_model).to(device)
    schedule = du.make_schedule("linear", SCHEDULE_T).to(device)
    config = _train_config(preset, variant, preset.sample_train_steps, batch_size=preset.sample_train_batch,
                           lr=preset.sample_lr, warmup_steps=preset.sample_warmup, ema_decay=preset.sample_ema,
                           check_every=min(50, preset.sample_train_steps))
    result = train(model, schedule, data.images, config, progress=False)
    save_checkpoint(workdir / "sampler.pt", result.ema_model, schedule, config)
    tail = result.losses[-max(1, len(result.losses) // 10):]
    return {
        "variant": variant.name,
        "parameters": count_parameters(model),
        "data_source": data.source,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "seconds": result.seconds,
        "final_loss": float(tail.mean()),
    }


@torch.no_grad()
def sample_case(preset: Preset, workdir: Path, device: torch.device, kind: str, steps: int) -> dict:
    """Time ``sample_batches`` calls of a sampler on ``sample_batch`` images; Fréchet distance of all."""
    from ddpm_utils.metrics import load_classifier, mnist_quality

    train_digits, test_digits = _mnist("train"), _mnist("test")
    classifier = load_classifier(device, data=(train_digits, test_digits), verbose=False)
    baseline = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = UNet(preset.sample_model).to(device).eval()
    schedule = load_checkpoint(workdir / "sampler.pt", model)
    c = preset.sample_model
    shape = (preset.sample_batch, c.in_channels, c.image_size, c.image_size)
    model(torch.zeros(shape, device=device), torch.zeros(shape[0], dtype=torch.long, device=device))  # warm-up

    seconds, batches = [], []
    for b in range(preset.sample_batches):
        gen = torch.Generator(device).manual_seed(b)  # the same x_T and noise for every sampler
        xT = torch.randn(shape, generator=gen, device=device)
        _sync(device)
        start = time.perf_counter()
        if kind == "ddpm":
            x0 = du.ddpm_sample(model, schedule, xT, clip_x0=True, generator=gen,
                                steps=None if steps == schedule.T else steps)
        else:
            x0 = du.ddim_sample(model, schedule, xT, steps=steps, eta=0.0, clip_x0=True, generator=gen)
        _sync(device)
        seconds.append(time.perf_counter() - start)
        batches.append(x0.clamp(-1, 1).cpu())
    samples = torch.cat(batches)
    if c.image_size == 32:
        samples = samples[..., 2:-2, 2:-2]  # the classifier reads 28×28: drop the padding
    quality = mnist_quality(classifier, samples, test_digits, train_digits,
                            generator=torch.Generator().manual_seed(0))
    mean = statistics.fmean(seconds)
    return {
        "sampler": kind,
        "steps": steps,
        "batch": preset.sample_batch,
        "seconds_per_batch": seconds,
        "mean_seconds": mean,
        "std_seconds": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
        "ms_per_step": 1000 * mean / steps,
        "frechet": quality.frechet,
        "floor": quality.floor,
        "n": quality.n,
        "class_counts": quality.class_counts.tolist(),
        "data_source": test_digits.source,
        **memory_report(device, baseline),
    }


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
