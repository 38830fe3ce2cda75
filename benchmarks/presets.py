"""What each benchmark preset measures, and at what size."""

from __future__ import annotations

from dataclasses import dataclass

from ddpm_utils.models import UNetConfig

# The training comparison's model: Ho et al.'s UNet at 32×32 with about 4M parameters.
UNET_4M = UNetConfig(image_size=32, base_channels=32, channel_mults=(1, 2, 4), num_res_blocks=2, attention=True)


@dataclass(frozen=True)
class Variant:
    """One way of running the package's training step (a row of the ablation table)."""

    name: str  # short key, used in the JSON
    label: str  # what the row says
    precision: str = "fp32"  # TrainConfig.precision: "fp32", "bf16", "fp16" (CUDA) or "auto"
    channels_last: bool = False  # TrainConfig.channels_last
    compile: bool = False  # TrainConfig.compile
    attention_fp32_on_cpu: bool = True  # ddpm_utils.models.unet.ATTENTION_FP32_ON_CPU during the row


FP32 = Variant("fp32", "package, fp32")
BF16 = Variant("bf16", "package, bf16", precision="bf16")
AUTO = Variant("auto", 'package, "auto"', precision="auto")
CPU_VARIANTS = (
    FP32,
    Variant("fp32-cl", "package, fp32, channels_last", channels_last=True),
    BF16,
    Variant("bf16-attn-bf16", "package, bf16, attention also in bf16", precision="bf16",
            attention_fp32_on_cpu=False),
    Variant("bf16-cl", "package, bf16, channels_last", precision="bf16", channels_last=True),
    Variant("bf16-compile", "package, bf16, torch.compile", precision="bf16", compile=True),
    AUTO,
)
GPU_VARIANTS = (
    FP32,
    Variant("fp16", "package, fp16 + GradScaler (forced, as on a T4)", precision="fp16"),
    BF16,
    Variant("bf16-cl", "package, bf16, channels_last", precision="bf16", channels_last=True),
    Variant("bf16-cl-compile", "package, bf16, channels_last, torch.compile", precision="bf16",
            channels_last=True, compile=True),
    AUTO,
)


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark run; the same code runs at every size."""

    name: str  # "cpu", "full" (a GPU) or "ci" (a tiny check of the code)
    # 1. training throughput: package step vs the textbook loop vs diffusers, same model and batch
    train_model: UNetConfig = UNET_4M  # the model every training row trains
    batch_size: int = 128  # images per step, every row
    warmup_steps: int = 5  # steps run before timing (DataLoader start-up, allocator, compilation); the first
    #                        steps of a CPU run are slower for longer than one or two steps
    timed_steps: int = 4  # steps in one timed window
    repeats: int = 5  # timed windows per row, one after another: the row gives their median and min–max
    variants: tuple[Variant, ...] = CPU_VARIANTS  # ablation rows of the package step
    recommended: str = "auto"  # the variant a reader gets by default: the headline row
    # 2. sampling: a model trained here with the recommended step, then DDPM-1000 vs DDIM
    sample_model: UNetConfig = UNetConfig(image_size=28, base_channels=16, channel_mults=(1, 2, 2),
                                          num_res_blocks=1, attention=False)
    sample_train_steps: int = 4000  # optimiser steps of the sampling model
    sample_train_batch: int = 64  # its batch size
    sample_lr: float = 1e-3  # its learning rate
    sample_warmup: int = 100  # its warm-up steps
    sample_ema: float = 0.999  # its EMA decay
    samplers: tuple[tuple[str, int], ...] = (("ddpm", 1000), ("ddim", 50), ("ddim", 20), ("dpmpp_2m", 20))
    sample_precision: str = "auto"  # precision of the sampler rows; DDIM-50 is also run in each of the next
    compared_precisions: tuple[str, ...] = ("fp32", "bf16")
    quality_steps: int = 1500  # fp32 against bf16 at equal steps: training steps of the sampling model
    quality_images: int = 256  # DDIM-50 samples (fp32 sampling) per trained model for the Fréchet distance
    profile_batch: int = 128  # the profiled training step of train_model
    matmul_sizes: tuple[int, ...] = (1024, 2048, 4096)  # n × n matrix products: the fastest is the reference
    sample_batch: int = 64  # images per timed sampling call
    sample_batches: int = 4  # calls per sampler; the Fréchet distance uses all their images
    import_repeats: int = 5  # fresh interpreters timed for the import cost


PRESETS = {
    "cpu": Preset("cpu"),
    "full": Preset(
        "full",
        warmup_steps=50,
        timed_steps=100,
        variants=GPU_VARIANTS,
        compared_precisions=("fp32", "bf16", "fp16"),
        quality_steps=3000,
        quality_images=1024,
        matmul_sizes=(4096, 8192, 16384),
        recommended="bf16-cl-compile",
        sample_model=UNET_4M,
        sample_train_steps=6000,
        sample_train_batch=256,
        sample_lr=4e-4,
        sample_warmup=200,
        sample_ema=0.999,
        sample_batches=16,
    ),
    "ci": Preset(
        "ci",
        train_model=UNetConfig(image_size=32, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=True),
        batch_size=8,
        warmup_steps=1,
        timed_steps=1,
        variants=(FP32, BF16, AUTO),
        sample_model=UNetConfig(image_size=28, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                                attention=False),
        sample_train_steps=20,
        sample_train_batch=16,
        sample_warmup=0,
        sample_ema=0.9,
        sample_batch=8,
        sample_batches=1,
        quality_steps=10,
        quality_images=16,
        profile_batch=4,
        matmul_sizes=(128, 256),
        import_repeats=2,
    ),
}


def default_preset() -> str:
    """``full`` on a CUDA machine, ``cpu`` otherwise."""
    import torch

    return "full" if torch.cuda.is_available() else "cpu"
