"""Fixtures shared by test files."""

import os
from pathlib import Path

import pytest
import torch

from book_build import build_book
from chromium import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def empty_ddpm_utils_cache(tmp_path_factory):
    """Every test session starts from an empty ddpm_utils cache (``DDPM_UTILS_CACHE``), so no test passes only
    because an earlier run, or another test, left a trained classifier in ``~/.cache``. Notebooks that nbmake runs
    later in the session start their kernels with this environment and share the same cache."""
    path = tmp_path_factory.mktemp("ddpm_utils_cache")
    previous = os.environ.get("DDPM_UTILS_CACHE")
    os.environ["DDPM_UTILS_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("DDPM_UTILS_CACHE", None)
    else:
        os.environ["DDPM_UTILS_CACHE"] = previous


@pytest.fixture(scope="module")
def one_thread():
    """Sampler loops on small tensors (a few thousand points, up to 1000 steps) gain nothing from intra-op
    threads, and on a busy 2-core machine the thread pool makes each step ~10x slower. A module that runs
    such loops sets ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The repository's own book, built once into a temporary directory; its ``_build/html``."""
    out = tmp_path_factory.mktemp("book")
    build_book([str(ROOT), "--path-output", str(out)])
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, one per test file (so that no Playwright
    event loop outlives the file that uses it); a skip that says why where either is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        pytest.skip(f"Playwright is not installed ({err}): pip install -r requirements.txt")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
