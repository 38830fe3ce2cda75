"""How close are samples to the data? Distances between sample sets, and an MNIST judge.

* :mod:`~ddpm_utils.metrics.distances`, for the toy data: :func:`wasserstein_1d` (exact, 1-D),
  :func:`sliced_wasserstein` (any D), :func:`mmd_rbf` (kernel two-sample statistic, for the 2-D
  toys), :func:`mode_masses` and :func:`misplaced_mass` (the share of samples in each mode of a
  Gaussian mixture, and how far those shares are from the mixture's).
* :mod:`~ddpm_utils.metrics.classifier`, the MNIST judge: a small LeNet-style
  :class:`MnistClassifier`, trained once and cached by :func:`load_classifier`, and the
  predicted-class histogram (:func:`class_histogram`), which shows missing or over-represented digits.
* :mod:`~ddpm_utils.metrics.frechet`: the Fréchet distance between Gaussians fitted to the judge's
  penultimate features (:func:`frechet_distance`, the recipe of FID with a digit classifier in
  place of Inception, so the numbers are *not* comparable with published FIDs), the train-vs-test
  :func:`frechet_floor` a sample set's distance is reported beside, and :func:`mnist_quality`.

Every name is importable from here: ``from ddpm_utils.metrics import mnist_quality``.
scipy is imported inside the functions that use it.
"""

from .classifier import (
    CLASSIFIER_VERSION,
    ClassifierConfig,
    MnistClassifier,
    class_histogram,
    classifier_features,
    load_classifier,
    predict,
)
from .distances import misplaced_mass, mmd_rbf, mode_masses, sliced_wasserstein, wasserstein_1d
from .frechet import SampleQuality, classifier_frechet, frechet_distance, frechet_floor, mnist_quality

__all__ = [
    "wasserstein_1d",
    "sliced_wasserstein",
    "mmd_rbf",
    "mode_masses",
    "misplaced_mass",
    "MnistClassifier",
    "ClassifierConfig",
    "CLASSIFIER_VERSION",
    "load_classifier",
    "predict",
    "class_histogram",
    "classifier_features",
    "frechet_distance",
    "classifier_frechet",
    "frechet_floor",
    "SampleQuality",
    "mnist_quality",
]
