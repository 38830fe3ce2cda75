"""Fixtures shared by test files."""

from pathlib import Path

import pytest

from book_build import build_book

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The repository's own book, built once into a temporary directory; its ``_build/html``."""
    out = tmp_path_factory.mktemp("book")
    build_book([str(ROOT), "--path-output", str(out)])
    return out / "_build" / "html"
