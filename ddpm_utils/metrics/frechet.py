"""The Fréchet distance between sample sets in the digit classifier's feature space, and its floor.

The recipe of FID with the MNIST judge of :mod:`ddpm_utils.metrics.classifier` in place of
Inception, so the numbers are *not* comparable with published FIDs: :func:`frechet_distance`
between Gaussians fitted to two feature sets, :func:`classifier_frechet` between two image sets,
the train-vs-test :func:`frechet_floor` a sample set's distance is reported beside, and
:func:`mnist_quality`, which reports both with the predicted-class histogram.

scipy is imported inside the function that uses it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import ImageData
from .classifier import MnistClassifier, class_histogram, classifier_features


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
