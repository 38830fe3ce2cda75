"""No host syncs in the hot path: a training step, a DDPM step and a DDIM step read no tensor back.

On a GPU, reading a tensor's values on the host (``int(t.max())``, ``bool(mask.any())``,
``.item()``, ``.tolist()``) makes the CPU wait until every kernel queued before it has run: a
sync, which leaves the GPU idle while the next kernels are launched. These tests run without a
GPU, so they show that a GPU run has no such read in two halves that add up:

1. Values are read only where ``free_to_read(tensor)`` holds, which is on the CPU. A tensor on
   the ``meta`` device has a shape but no data, and reading it raises; so code that runs on
   ``meta`` reads nothing. ``check_timesteps``, the UNet's labels, the decoder's data check,
   DDPM sampling with a callback and a training step's loss and backward all run there.
2. With ``free_to_read`` answering False for every tensor, as it does on a GPU, ``train``,
   ``ddpm_sample`` and ``ddim_sample`` on the CPU read exactly as many tensors with 2n steps as
   with n steps: none per step. The reads are counted by wrapping the methods of ``torch.Tensor``
   that read values. The one thing left out is torch's own CPU AdamW, which reads its step
   counter, a CPU tensor (the fused AdamW that ``train`` uses on CUDA reads none).

Neither half sees a sync made inside a torch function (``x[mask]``, ``torch.nonzero``), only the
reads that Python code makes through the tensor's methods.
"""

import sys
from collections import Counter
from contextlib import contextmanager

import pytest
import torch

from ddpm_utils import (
    check_timesteps,
    ddim_sample,
    ddpm_sample,
    discretized_gaussian_log_likelihood,
    dpmpp_2m_sample,
    l_simple,
    make_schedule,
    nll_bits_per_dim,
    p_mean_variance,
    q_sample,
    vlb_terms,
)
from ddpm_utils.guidance import ClassifierFreeGuidance
from ddpm_utils.models import ConcatMLP, ConcatMLPConfig, MLPConfig, MLPDenoiser, UNet, UNetConfig
from ddpm_utils.schedules import free_to_read
from ddpm_utils.training import TrainConfig, train

READS = ("item", "__int__", "__float__", "__bool__", "__index__", "tolist", "numpy", "cpu", "nonzero")


@contextmanager
def counting_host_reads():
    """Count the calls of the Tensor methods in READS, by the line of Python that made them."""
    counts: Counter = Counter()
    saved = {name: torch.Tensor.__dict__.get(name) for name in READS}

    def counted(name):
        method = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "/torch/optim/" not in caller:  # the CPU AdamW's step counter (module docstring)
                counts[f"{name} at {caller}:{sys._getframe(1).f_lineno}"] += 1
            return method(self, *args, **kwargs)

        return read

    for name in READS:
        setattr(torch.Tensor, name, counted(name))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def reads_per_step(run, n: int) -> dict[str, float]:
    """The host reads of ``run(2n)`` minus those of ``run(n)``, per step: what every step adds."""
    with counting_host_reads() as once:
        run(n)
    with counting_host_reads() as twice:
        run(2 * n)
    return {where: (twice[where] - once[where]) / n for where in once | twice if twice[where] != once[where]}


@pytest.fixture
def like_a_gpu(monkeypatch):
    """``free_to_read`` answers False, as for a GPU tensor, in every module of the package that uses it."""
    users = [m for name, m in list(sys.modules.items())
             if name.startswith("ddpm_utils") and getattr(m, "free_to_read", None) is free_to_read]
    assert {"ddpm_utils.schedules", "ddpm_utils.models.embedding", "ddpm_utils.losses"} <= {m.__name__ for m in users}
    for module in users:
        monkeypatch.setattr(module, "free_to_read", lambda tensor: False)


def _mlp():
    torch.manual_seed(0)
    return MLPDenoiser(MLPConfig(data_dim=2, hidden=16, depth=1, time_dim=8))


def _concat(num_classes=None):
    torch.manual_seed(0)
    return ConcatMLP(ConcatMLPConfig(hidden=8, num_classes=num_classes))


def _unet(num_classes=None):
    torch.manual_seed(0)
    return UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, num_heads=2,
                           groups=4, num_classes=num_classes))


def _images(n=16):
    """8-bit values in [-1, 1], (n, 1, 8, 8)."""
    levels = torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    return levels / 127.5 - 1


# --- 1. on `meta`, where every read raises ---------------------------------------------------


def test_free_to_read_only_on_the_cpu():
    assert free_to_read(torch.zeros(2)) and not free_to_read(torch.zeros(2, device="meta"))


def test_check_timesteps_reads_no_values_of_a_device_t_but_still_checks_its_metadata():
    s = make_schedule(T=10).to("meta")
    t = torch.zeros(3, dtype=torch.long, device="meta")
    check_timesteps(s, t, torch.zeros(3, 2, device="meta"))  # a read of a meta tensor would raise
    with pytest.raises(ValueError, match="integer"):
        check_timesteps(s, t.float())
    with pytest.raises(ValueError, match="one timestep per example"):
        check_timesteps(s, t, torch.zeros(4, 2, device="meta"))
    with pytest.raises(ValueError, match="schedule.to"):
        check_timesteps(s, torch.zeros(3, dtype=torch.long), torch.zeros(3, 2, device="meta"))


def test_a_training_step_on_meta_reads_nothing():
    """Forward and backward of both losses through a class-conditional UNet, labels checked on the way."""
    s = make_schedule(T=10).to("meta")
    model = _unet(num_classes=3).to("meta")
    x0, t = torch.zeros(4, 1, 8, 8, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")

    def conditional(xt, t):
        return model(xt, t, y)

    noise = torch.zeros_like(x0)
    loss = l_simple(conditional, s, x0, t, noise).mean() + vlb_terms(conditional, s, x0, t, noise).mean()
    loss.backward()
    assert next(model.parameters()).grad.device.type == "meta"
    assert discretized_gaussian_log_likelihood(x0, x0, torch.zeros_like(x0)).device.type == "meta"


def test_ddpm_sampling_with_a_callback_on_meta_reads_nothing():
    s = make_schedule(T=6).to("meta")
    seen = []
    out = ddpm_sample(_mlp().to("meta"), s, (4, 2), callback=lambda step: seen.append(step.t))
    assert out.device.type == "meta" and seen == [5, 4, 3, 2, 1, 0]
    assert p_mean_variance(_mlp().to("meta"), s, out, torch.zeros(4, dtype=torch.long, device="meta")).mean.shape == (4, 2)


# --- 2. counted on the CPU, with free_to_read answering as for a GPU ------------------------

SCHEDULE = make_schedule("linear", 20)
ZERO_SNR = make_schedule("linear", 20, zero_terminal_snr=True)
CONFIG = dict(batch_size=8, check_every=10**6, precision="fp32")  # the loss check runs once, at the end

RUNS = {
    "train-mlp": lambda n: train(_mlp(), SCHEDULE, torch.randn(32, 2), TrainConfig(steps=n, **CONFIG), progress=False),
    "train-unet-labels": lambda n: train(_unet(3), SCHEDULE, _images(), TrainConfig(steps=n, p_uncond=0.2, **CONFIG),
                                         labels=torch.arange(16) % 3, progress=False),
    "train-unet-vlb-importance": lambda n: train(_unet(), SCHEDULE, _images(), TrainConfig(
        steps=n, loss="vlb", t_sampling="importance", record_loss_per_t=True, **CONFIG), progress=False),
    "ddpm-all-steps": lambda n: ddpm_sample(_mlp(), make_schedule("linear", n), (4, 2),
                                            callback=lambda step: None),
    "ddpm-respaced": lambda n: ddpm_sample(_mlp(), SCHEDULE, (4, 2), steps=n, callback=lambda step: None),
    "ddim": lambda n: ddim_sample(_mlp(), SCHEDULE, (4, 2), steps=n, callback=lambda step: None),
    "ddim-eta-1": lambda n: ddim_sample(_mlp(), SCHEDULE, (4, 2), steps=n, eta=1.0),
    "dpmpp-2m": lambda n: dpmpp_2m_sample(_mlp(), SCHEDULE, (4, 2), steps=n, callback=lambda step: None),
    # zero terminal SNR: the ε-target check reads Python values once per call, never a tensor per step
    "ddpm-zero-snr-v": lambda n: ddpm_sample(_mlp(), ZERO_SNR, (4, 2), steps=n, target="v", callback=lambda step: None),
    "ddim-zero-snr-v": lambda n: ddim_sample(_mlp(), ZERO_SNR, (4, 2), steps=n, target="v", eta=1.0),
    "dpmpp-2m-zero-snr-v": lambda n: dpmpp_2m_sample(_mlp(), ZERO_SNR, (4, 2), steps=n, target="v",
                                                    callback=lambda step: None),
    "train-concat-mlp-labels": lambda n: train(_concat(2), SCHEDULE, torch.randn(32), TrainConfig(
        steps=n, p_uncond=0.1, **CONFIG), labels=torch.arange(32) % 2, progress=False),
    "ddpm-guided": lambda n: ddpm_sample(ClassifierFreeGuidance(_concat(2), torch.arange(4) % 2, 3.0), SCHEDULE,
                                         (4,), steps=n, callback=lambda step: None),
}


@pytest.mark.parametrize("run", RUNS)
def test_no_host_read_per_training_or_sampling_step(like_a_gpu, run):
    assert reads_per_step(RUNS[run], 3) == {}


def test_the_counter_sees_the_reads_a_cpu_run_makes():
    """Without like_a_gpu, a CPU t is range-checked in q_sample (two reads per training step) and in
    p_mean_variance and q_posterior (four per DDPM step): the counter does see them."""
    assert sum(reads_per_step(RUNS["train-mlp"], 2).values()) == 2
    assert sum(reads_per_step(RUNS["ddpm-respaced"], 2).values()) == 4
    with counting_host_reads() as counts:
        q_sample(SCHEDULE, torch.zeros(3, 2), torch.tensor([0, 5, 19]))
    assert sum(counts.values()) == 2


def test_what_the_loop_does_not_check_is_checked_once_before_it(like_a_gpu):
    """With the per-step value checks off, as on a GPU, bad labels and bad 8-bit data still fail early."""
    config = TrainConfig(steps=1, **CONFIG)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        train(_unet(3), SCHEDULE, _images(), config, labels=torch.arange(16) % 5, progress=False)
    bad = _images() * 2
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        train(_unet(), SCHEDULE, bad, TrainConfig(steps=1, loss="vlb", **CONFIG), progress=False)
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        nll_bits_per_dim(_unet(), SCHEDULE, bad[:2])
