"""The textbook DDPM training loop, as tutorials write it: the baseline of the training benchmark.

What makes it the textbook loop, each a habit found in most DDPM tutorials:
  * a torchvision-style dataset that turns one uint8 image at a time into a PIL image and runs
    ``Resize(32)``, ``ToTensor()``, ``Normalize((0.5,), (0.5,))`` on it;
  * a ``DataLoader(shuffle=True, num_workers=2)`` feeding the loop, batches copied to the device;
  * float32 throughout, ``Adam``-style optimiser, gradient clipping;
  * an EMA that walks ``model.state_dict()`` tensor by tensor after every step;
  * ``loss.item()`` every step for the progress bar.
The model, the batch, the schedule, the loss (Ho et al. Algorithm 1) and the optimiser's
hyper-parameters are the package's, so only the habits differ.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm_utils import Schedule


class MnistDigits(torch.utils.data.Dataset):
    """Digits served the way ``torchvision.datasets.MNIST`` serves them: uint8 → PIL → transform."""

    def __init__(self, pixels: Tensor, labels: Tensor, transform):
        if pixels.dtype != torch.uint8 or pixels.ndim != 3:
            raise ValueError(f"pixels must be uint8 (N, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
        self.pixels, self.labels, self.transform = pixels.numpy(), labels, transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[i], mode="L")), int(self.labels[i])


def textbook_transform(image_size: int = 32):
    """Resize(image_size) → ToTensor → Normalize to [-1, 1], applied per image."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(image_size), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    )


def to_uint8(images: Tensor) -> Tensor:
    """Images (N, 1, H, W) in [-1, 1] back to the uint8 pixels (N, H, W) they were made from."""
    return ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _batches(dataset: MnistDigits, batch_size: int, resident: bool):
    """Endless batches: through a DataLoader with 2 workers, or by index from the transformed set."""
    if not resident:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2,
                                             drop_last=True)
        while True:
            for x0, _ in loader:  # the workers restart at every epoch, as by default
                yield x0
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])  # (N, 1, H, W), transformed once
    while True:
        for idx in torch.randperm(len(images)).split(batch_size):
            if len(idx) == batch_size:
                yield images[idx]


def train_textbook(
    model: nn.Module,
    schedule: Schedule,
    dataset: MnistDigits,
    batch_size: int,
    steps: int,
    lr: float = 2e-4,
    ema_decay: float = 0.999,
    grad_clip: float = 1.0,
    resident: bool = False,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` for ``steps`` steps the textbook way; return the clock after each step.

    ``resident=True`` replaces the DataLoader by batches drawn from the dataset transformed once,
    to separate the cost of the data pipeline from the rest of the loop.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sqrt_ab = schedule.sqrt_alpha_bars.to(device)
    sqrt_one_minus_ab = schedule.sqrt_one_minus_alpha_bars.to(device)
    clock = []
    bar = tqdm(total=steps, disable=not progress, desc="textbook")
    batches = _batches(dataset, batch_size, resident)
    model.train()
    for _ in range(steps):
        x0 = next(batches).to(device)  # (B, 1, H, W)
        t = torch.randint(0, schedule.T, (batch_size,), device=device)
        noise = torch.randn_like(x0)
        xt = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_one_minus_ab[t].view(-1, 1, 1, 1) * noise
        loss = F.mse_loss(model(xt, t), noise)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        with torch.no_grad():  # the EMA, one state_dict entry at a time
            ema_state = ema.state_dict()
            for name, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    ema_state[name].mul_(ema_decay).add_(value, alpha=1 - ema_decay)
                else:
                    ema_state[name].copy_(value)
        bar.set_postfix(loss=loss.item())
        bar.update()
        clock.append(time.perf_counter())
    bar.close()
    return clock
